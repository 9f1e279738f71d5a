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

export class Transcript {
  /**
   * @param root the container element
   * @param hooks {answer(requestId, optionId, answers), answeredHere(requestId) → bool, onPrompt(prompt, live)}
   */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.reset();
  }

  reset() {
    this.root.replaceChildren();
    this.tools = new Map();
    this.prompts = new Map();
    this.block = null; // the agent message or thought that chunks append to
    this.plan = null; // the plan card of the current turn
    this.mode = null; // the mode the last mode line named, so a repeated report adds no line
    this.modeNames = this.modeNames || new Map();
    this.dirty = new Set();
    clearTimeout(this.timer);
    this.timer = null;
    this.count = 0;
  }

  get openPrompts() {
    return [...this.prompts.values()].filter((p) => !p.resolved);
  }

  add(node) {
    this.root.append(node);
    this.count++;
    return node;
  }

  endBlock() {
    this.block = null;
  }

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
    this.timer = null;
    for (const block of this.dirty) renderMarkdown(block.body, block.text);
    this.dirty.clear();
  }

  /** Show one event. `live`: it happened now (not history replayed on load). */
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

  /** A line saying the session's mode changed (by the user, the daemon, or the agent itself). */
  modeChange(id) {
    if (id === this.mode) return;
    this.mode = id;
    this.endBlock();
    this.add(el("p", { class: "turn-note mode-note", dataset: { mode: id }, text: this.modeLabel(id) }));
  }

  modeLabel(id) {
    const name = this.modeNames.get(id) || id.charAt(0).toUpperCase() + id.slice(1);
    return `Mode: ${name}`;
  }

  /** Learn the modes' names (`options`: [{value: id, text: name}]) and relabel the lines shown. */
  nameModes(options) {
    this.modeNames = new Map([...options].map((o) => [o.value, o.text]));
    for (const line of this.root.querySelectorAll(".mode-note")) line.textContent = this.modeLabel(line.dataset.mode);
  }

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

  permissionRequest(event, live) {
    this.endBlock();
    const prompt = new PermissionPrompt(event, this.hooks.answer);
    this.prompts.set(event.request_id, prompt);
    this.add(prompt.el);
    this.hooks.onPrompt(prompt, live);
  }

  /** A note that history before `firstSeq` is no longer held by the daemon. */
  missingHistory(count) {
    this.endBlock();
    this.add(el("p", { class: "turn-note", text: `${count} earlier event${count > 1 ? "s are" : " is"} no longer kept by the daemon.` }));
  }
}
