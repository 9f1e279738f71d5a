// @ts-check
// The transcript's cards: tool calls (with diffs and output), plans, errors and permission prompts.
// All agent-supplied strings go in as text nodes; only Markdown goes through markdown.js.

import { el, errorHint, replaceChildren } from "./util.js";

/** @typedef {import("./protocol.js").ToolCall} ToolCall */

/** @type {Record<string, string>} */
const STATUS_LABELS = {
  pending: "pending",
  in_progress: "running",
  completed: "done",
  failed: "failed",
  interrupted: "interrupted",
  cancelled: "cancelled",
  unfinished: "not finished",
};
const OPEN_STATUSES = new Set(["pending", "in_progress"]);
const CONTEXT_LINES = 3;
const MAX_DIFF_CELLS = 400_000;

// --- diffs -----------------------------------------------------------------------------------

/** @param {unknown} text */
function splitLines(text) {
  if (!text) return [];
  const lines = String(text).split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/**
 * Line diff of two texts: [{op: " " | "-" | "+", text}] (LCS on the part that differs).
 * @param {string} before
 * @param {string} after
 * @returns {{op: " " | "-" | "+", text: string}[]}
 */
export function diffLines(before, after) {
  const a = splitLines(before);
  const b = splitLines(after);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  /** @type {{op: " " | "-" | "+", text: string}[]} */
  const out = a.slice(0, start).map((text) => ({ op: " ", text }));
  const midA = a.slice(start, endA);
  const midB = b.slice(start, endB);
  const n = midA.length;
  const m = midB.length;
  if (n * m > MAX_DIFF_CELLS) {
    midA.forEach((text) => out.push({ op: "-", text }));
    midB.forEach((text) => out.push({ op: "+", text }));
  } else {
    // lcs[i][j] = LCS length of midA[i:] and midB[j:], in one flat array
    const width = m + 1;
    const lcs = new Uint32Array((n + 1) * width);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i * width + j] =
          midA[i] === midB[j] ? lcs[(i + 1) * width + j + 1] + 1 : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && midA[i] === midB[j]) {
        out.push({ op: " ", text: midA[i++] });
        j++;
      } else if (i < n && (j === m || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])) {
        out.push({ op: "-", text: midA[i++] }); // removals before additions, as diff(1) shows them
      } else {
        out.push({ op: "+", text: midB[j++] });
      }
    }
  }
  a.slice(endA).forEach((text) => out.push({ op: " ", text }));
  return out;
}

/**
 * A diff block: changed lines with a little context; long unchanged runs fold into one line.
 * @param {Record<string, any>} item a tool content item of type "diff"
 */
export function diffView(item) {
  const lines = diffLines(item.old_text || "", item.new_text || "");
  const keep = lines.map(() => false);
  lines.forEach((line, index) => {
    if (line.op === " ") return;
    for (let k = Math.max(0, index - CONTEXT_LINES); k <= Math.min(lines.length - 1, index + CONTEXT_LINES); k++) {
      keep[k] = true;
    }
  });
  const body = el("pre", { class: "diff-body" });
  let skipped = 0;
  const flush = () => {
    if (skipped) body.append(el("span", { class: "line fold", text: `⋯ ${skipped} unchanged line${skipped > 1 ? "s" : ""}` }));
    skipped = 0;
  };
  lines.forEach((line, index) => {
    if (!keep[index]) {
      skipped++;
      return;
    }
    flush();
    const cls = line.op === "+" ? "add" : line.op === "-" ? "del" : "ctx";
    body.append(el("span", { class: `line ${cls}`, text: `${line.op} ${line.text}` }));
  });
  flush();
  const added = lines.filter((l) => l.op === "+").length;
  const removed = lines.filter((l) => l.op === "-").length;
  const title = item.old_text ? "" : " (new file)";
  return el(
    "div",
    { class: "diff" },
    el(
      "div",
      { class: "diff-head" },
      el("span", { class: "path", text: (item.path || "file") + title }),
      el("span", { class: "diff-stat" }, el("span", { class: "add", text: `+${added}` }), " ", el("span", { class: "del", text: `−${removed}` })),
    ),
    body,
  );
}

// --- tool calls ------------------------------------------------------------------------------

/** @param {Record<string, any> | undefined} block */
function contentBlockView(block) {
  if (!block || typeof block !== "object") return null;
  if (block.type === "text") return el("pre", { class: "output", text: block.text || "" });
  if (block.type === "resource" && block.resource) {
    return el("pre", { class: "output", text: block.resource.text || block.resource.uri || "" });
  }
  if (block.type === "resource_link") return el("p", { class: "muted", text: block.name || block.uri || "resource" });
  return el("p", { class: "muted", text: `[${block.type || "content"}]` });
}

/**
 * The body of a tool call or permission request: text output, diffs, terminals.
 * @param {unknown} content a tool call's content list (anything else shows nothing)
 */
export function toolContentView(content) {
  const items = Array.isArray(content) ? content : [];
  return items.map((item) => {
    if (!item || typeof item !== "object") return null;
    if (item.type === "diff") return diffView(item);
    if (item.type === "terminal") return el("p", { class: "muted", text: `terminal ${item.terminal_id || ""}` });
    if (item.type === "content") return contentBlockView(item.content);
    return null;
  });
}

/** @param {unknown} raw */
function inputView(raw) {
  if (raw === undefined || raw === null || (typeof raw === "object" && !Object.keys(raw).length)) return null;
  const text = typeof raw === "string" ? raw : JSON.stringify(raw, null, 2);
  return el("details", { class: "raw" }, el("summary", { text: "Input" }), el("pre", { class: "output", text }));
}

export class ToolCard {
  /** @param {Partial<ToolCall>} data the tool_call event */
  constructor(data) {
    /** @type {Partial<ToolCall> & Record<string, unknown>} the call as its events told it so far */
    this.data = {};
    /** @type {string | null} */
    this.ended = null; // how the turn ended, once it did: a card still open then is not running
    this.el = el("article", { class: "tool" });
    this.update(data);
  }

  /**
   * The turn ended (`stopReason`): a card still pending or running shows that it never finished.
   * @param {string} stopReason
   */
  turnEnded(stopReason) {
    this.ended = stopReason === "interrupted" || stopReason === "cancelled" ? stopReason : "unfinished";
    if (OPEN_STATUSES.has(this.data.status || "pending")) this.update({});
  }

  /** @param {Partial<ToolCall>} fields a tool_call_update event (only what changed) */
  update(fields) {
    for (const [key, value] of Object.entries(fields)) {
      if (!["seq", "type", "ts"].includes(key) && value !== undefined && value !== null) this.data[key] = value;
    }
    const d = this.data;
    const kind = d.kind || "other";
    const reported = d.status || "pending";
    const status = this.ended && OPEN_STATUSES.has(reported) ? this.ended : reported;
    this.el.className = `tool status-${status}`;
    this.el.setAttribute("data-tool-call-id", d.tool_call_id || "");
    this.el.dataset.status = status;
    this.el.setAttribute("aria-label", `${kind}: ${d.title || d.tool_call_id || "tool call"}`);
    const locations = Array.isArray(d.locations) ? d.locations.filter((l) => l && l.path) : [];
    replaceChildren(
      this.el,
      el(
        "header",
        { class: "tool-head" },
        el("span", { class: `tool-kind kind-${kind}`, text: kind.replace("_", " ") }),
        el("span", { class: "tool-title", text: d.title || d.tool_call_id || "tool call" }),
        el("span", { class: `badge tool-status status-${status}`, text: STATUS_LABELS[status] || status }),
      ),
      locations.length
        ? el("ul", { class: "locations" }, locations.map((l) => el("li", { text: l.line ? `${l.path}:${l.line}` : l.path })))
        : null,
      el("div", { class: "tool-body" }, toolContentView(d.content)),
      inputView(d.raw_input),
    );
  }
}

// --- plan, errors, notes -----------------------------------------------------------------------

/** @type {Record<string, string>} */
const PLAN_MARKS = { completed: "☑", in_progress: "◐", pending: "☐" };

/** @param {{content?: string, status?: string}[] | undefined} entries */
export function planView(entries) {
  const items = (Array.isArray(entries) ? entries : []).map((entry) => {
    const status = entry.status || "pending";
    return el(
      "li",
      { class: `plan-entry status-${status}` },
      el("span", { class: "mark", "aria-hidden": "true", text: PLAN_MARKS[status] || "☐" }),
      el("span", { class: "plan-text", text: entry.content || "" }),
      el("span", { class: "visually-hidden", text: ` (${status.replace("_", " ")})` }),
    );
  });
  return el("section", { class: "plan", "aria-label": "Plan" }, el("h3", { text: "Plan" }), el("ul", { class: "plan-list" }, items));
}

/** @param {string} message */
export function errorCard(message) {
  return el(
    "div",
    { class: "error-card", role: "alert" },
    el("strong", { text: "Error" }),
    el("p", { class: "error-message", text: message || "unknown error" }),
    el("p", { class: "hint", text: errorHint(message) }),
  );
}

/** @type {Record<string, string>} */
const STOP_NOTES = {
  cancelled: "Turn cancelled.",
  interrupted: "Interrupted — the daemon stopped before the turn ended; prompt again to continue.",
  max_tokens: "Stopped: the reply reached the token limit.",
  max_turn_requests: "Stopped: too many steps in one turn.",
  refusal: "The agent refused to continue.",
};

/** @param {string} stopReason */
export function turnNote(stopReason) {
  const text = STOP_NOTES[stopReason];
  return text ? el("p", { class: `turn-note stop-${stopReason}`, text }) : null;
}
