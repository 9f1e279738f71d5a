// @ts-check
// Turns numbered session events into the conversation view. It trusts the stream (stream.js) to
// hand it every event exactly once, in order; it only decides what each one looks like.
//
// Streaming text is re-rendered as Markdown on a short timer rather than per chunk, so a reply of
// a thousand chunks costs a few dozen renders, and an open code fence mid-stream still displays.

import { ToolCard, errorCard, planView, turnNote } from "./cards.js";
import { renderMarkdown } from "./markdown.js";
import { PermissionPrompt } from "./permission.js";
import { el } from "./util.js";

const RENDER_DELAY_MS = 40;

/** @typedef {{kind: string, body: HTMLElement, text: string}} Block streaming text: an agent message or thought */

export class Transcript {
  /**
   * @param {HTMLElement} root the container element
   * @param {{
   *   answer: (requestId: string, optionId: string, answers?: Record<string, string | string[]>) => Promise<void>,
   *   answeredHere: (requestId: string) => boolean,
   *   onPrompt: (prompt: PermissionPrompt, live: boolean) => void,
   * }} hooks
   */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    /** @type {Map<string, string>} mode id → name, kept across resets */
    this.modeNames = new Map();
    this.reset();
  }

  reset() {
    this.root.replaceChildren();
    /** @type {Map<string, ToolCard>} */
    this.tools = new Map();
    /** @type {Map<string, PermissionPrompt>} */
    this.prompts = new Map();
    /** @type {Block | null} */
    this.block = null; // the agent message or thought that chunks append to
    /** @type {HTMLElement | null} */
    this.plan = null; // the plan card of the current turn
    /** @type {string | null} */
    this.mode = null; // the mode the last mode line named, so a repeated report adds no line
    this.modeNames = this.modeNames || new Map();
    /** @type {Set<Block>} */
    this.dirty = new Set();
    clearTimeout(this.timer);
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    /** @type {number} the nodes added, so the page knows whether it shows anything */
    this.count = 0;
  }

  get openPrompts() {
    return [...this.prompts.values()].filter((p) => !p.resolved);
  }

  /**
   * @template {Node} N
   * @param {N} node
   * @returns {N}
   */
  add(node) {
    this.root.append(node);
    this.count++;
    return node;
  }

  endBlock() {
    this.block = null;
  }

  /**
   * @param {"agent" | "thought"} kind
   * @param {string | undefined} text
   */
  appendText(kind, text) {
    if (!text) return;
    if (!this.block || this.block.kind !== kind) {
      const body = el("div", { class: "md" });
      const node =
        kind === "thought"
          ? el("details", { class: "thought" }, el("summary", { text: "Thinking" }), body)
          : el("div", { class: "msg agent" }, body);
      this.add(node);
      this.block = { kind, body, text: "" };
    }
    this.block.text += text;
    this.dirty.add(this.block);
    if (!this.timer) this.timer = setTimeout(() => this.flush(), RENDER_DELAY_MS);
  }

  /** Render pending Markdown now (also called before anything else is appended after it). */
  flush() {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const block of this.dirty) renderMarkdown(block.body, block.text);
    this.dirty.clear();
  }

  /**
   * Show one event. `live`: it happened now (not history replayed on load).
   * @param {import("./protocol.js").Event} event
   * @param {boolean} live
   */
  apply(event, live) {
    switch (event.type) {
      case "user_message":
        this.endBlock();
        this.add(el("div", { class: "msg user" }, el("div", { class: "msg-body", text: event.text || "" })));
        break;
      case "agent_message_chunk":
        this.appendText("agent", event.text);
        break;
      case "agent_thought_chunk":
        this.appendText("thought", event.text);
        break;
      case "tool_call":
      case "tool_call_update":
        this.toolCall(event);
        break;
      case "plan": {
        // one checklist per turn, updated in place as the agent ticks entries off
        this.endBlock();
        if (event.removed) {
          this.plan?.remove();
          this.plan = null;
          break;
        }
        const view = planView(event.entries);
        if (typeof event.markdown === "string") {
          const body = el("div", { class: "md" });
          renderMarkdown(body, event.markdown);
          view.append(body);
        }
        if (this.plan && this.plan.isConnected) this.plan.replaceWith(view);
        else this.add(view);
        this.plan = view;
        break;
      }
      case "permission_request":
        this.permissionRequest(event, live);
        break;
      case "permission_resolved": {
        const prompt = this.prompts.get(event.request_id);
        if (prompt) {
          const why = event.expired ? "Expired — the daemon restarted before it was answered" : undefined;
          prompt.resolve(event.option_id, live && !this.hooks.answeredHere(event.request_id), why, event.answers);
        }
        break;
      }
      case "turn_started":
        this.endBlock();
        this.plan = null;
        break;
      case "turn_ended": {
        this.endBlock();
        for (const card of this.tools.values()) card.turnEnded(event.stop_reason);
        const note = turnNote(event.stop_reason);
        if (note) this.add(note);
        break;
      }
      case "error":
        this.endBlock();
        this.add(errorCard(event.message));
        break;
      case "mode_changed":
        if (typeof event.mode_id === "string") this.modeChange(event.mode_id);
        break;
      default:
        break; // state is shown in the header
    }
  }

  /**
   * A line saying the session's mode changed (by the user, the daemon, or the agent itself).
   * @param {string} id
   */
  modeChange(id) {
    if (id === this.mode) return;
    this.mode = id;
    this.endBlock();
    this.add(el("p", { class: "turn-note mode-note", dataset: { mode: id }, text: this.modeLabel(id) }));
  }

  /** @param {string} id */
  modeLabel(id) {
    const name = this.modeNames.get(id) || id.charAt(0).toUpperCase() + id.slice(1);
    return `Mode: ${name}`;
  }

  /**
   * Learn the modes' names (`options`: [{value: id, text: name}]) and relabel the lines shown.
   * @param {Iterable<{value: string, text: string}>} options
   */
  nameModes(options) {
    this.modeNames = new Map([...options].map((o) => [o.value, o.text]));
    for (const line of /** @type {NodeListOf<HTMLElement>} */ (this.root.querySelectorAll(".mode-note"))) line.textContent = this.modeLabel(/** @type {string} set by modeChange */ (line.dataset.mode));
  }

  /** @param {import("./protocol.js").ToolCall} event a tool_call or tool_call_update event */
  toolCall(event) {
    const id = event.tool_call_id;
    const card = id ? this.tools.get(id) : undefined;
    if (card) {
      card.update(event);
      return;
    }
    this.endBlock();
    const fresh = new ToolCard(event);
    if (id) this.tools.set(id, fresh);
    this.add(fresh.el);
  }

  /**
   * @param {import("./protocol.js").PermissionRequest} event a permission_request event
   * @param {boolean} live
   */
  permissionRequest(event, live) {
    this.endBlock();
    const prompt = new PermissionPrompt(event, this.hooks.answer);
    this.prompts.set(event.request_id, prompt);
    this.add(prompt.el);
    this.hooks.onPrompt(prompt, live);
  }

  /**
   * A note that history before `firstSeq` is no longer held by the daemon.
   * @param {number} count
   */
  missingHistory(count) {
    this.endBlock();
    this.add(el("p", { class: "turn-note", text: `${count} earlier event${count > 1 ? "s are" : " is"} no longer kept by the daemon.` }));
  }
}
