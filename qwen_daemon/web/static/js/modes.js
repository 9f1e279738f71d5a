// @ts-check
// The session's agent and its mode: a <select> of the modes the agent advertises (ACP session
// modes: Qwen Code has plan, default, auto-edit, auto and yolo), switched through the REST API.
//
// The current mode follows the stream, not our own requests: every switch, whoever makes it (this
// tab, another one, the CLI, the agent itself), arrives as a `mode_changed` event. The list of
// modes is only in the session's detail, `modes: {available: [{id, name, description}],
// current_mode_id}` (the daemon keeps it with the session, so it is there after a restart while
// the agent still sleeps): the page gives
// it the detail it was rendered with and the one it fetches at each (re)connect, and the picker
// fetches it again when the session finishes starting or reports a mode not listed. An agent that
// advertises no modes gets no selector.

import { api, el, replaceChildren } from "./util.js";

/** @typedef {{id: string, name?: string, description?: string}} Mode a mode the agent advertises */

/**
 * The mode id a stream event switches to, or null when the event is about something else.
 * @param {import("./protocol.js").Event} event
 * @returns {string | null}
 */
export function modeOf(event) {
  return event.type === "mode_changed" && typeof event.mode_id === "string" ? event.mode_id : null;
}

export class ModePicker {
  /**
   * @param {{field: HTMLElement, select: HTMLSelectElement, agent: HTMLElement}} ui the selector's
   *   wrapper, the <select>, the agent name
   * @param {string} base the session's API path
   * @param {(text: string, kind?: string) => void} note shows (or, with "", clears) a message to the user
   */
  constructor(ui, base, note) {
    this.ui = ui;
    this.base = base;
    this.note = note;
    /** @type {Mode[]} */
    this.modes = []; // [{id, name, description}] as the agent advertised them
    this.listed = ""; // the options now in the <select>, so an unchanged list is not rebuilt
    /** @type {string | null} */
    this.current = null;
    /** @type {string | null} */
    this.state = null;
    this.usable = true;
    this.version = 0; // bumped by every mode change seen, so an older fetch cannot undo a newer one
    this.request = 0; // the latest switch asked for here; only its answer is applied
    ui.select.addEventListener("change", () => this.choose(ui.select.value));
  }

  /**
   * The stream's greeting: the session as it is now.
   * @param {Partial<import("./protocol.js").SessionSummary>} session
   */
  hello(session) {
    if (session.agent) this.ui.agent.textContent = session.agent;
    this.state = session.state || this.state;
    if (typeof session.mode === "string") this.setCurrent(session.mode);
  }

  /**
   * One stream event; `live`: it happened now (history before the greeting is already summed up).
   * @param {import("./protocol.js").Event} event
   * @param {boolean} live
   */
  event(event, live) {
    if (!live) return;
    if (event.type === "state") {
      const was = this.state;
      this.state = event.state;
      if (was === "starting") this.refresh(); // the agent has now told which modes it offers
      return;
    }
    const mode = modeOf(event);
    if (mode === null) return;
    this.setCurrent(mode);
    if (!this.modes.some((m) => m.id === mode)) this.refresh();
  }

  /**
   * Whether the session can still change (not closed, failed or gone).
   * @param {boolean} usable
   */
  setUsable(usable) {
    this.usable = usable;
    this.render();
  }

  /** @param {string} mode */
  setCurrent(mode) {
    this.version++;
    this.current = mode;
    this.render();
  }

  /** Fetch the modes the agent offers this session (they are only in the session's detail). */
  async refresh() {
    const version = this.version;
    let detail;
    try {
      detail = await api("GET", this.base);
    } catch {
      return; // the stream finds out why (gone, logged out, offline) and says so
    }
    this.apply(detail, version);
  }

  /** Take the modes and the current mode from a session detail fetched at `version` (default:
   * now). A detail without modes (none recorded yet) leaves the known list as it is.
   * @param {import("./protocol.js").SessionDetail | null | undefined} detail
   * @param {number} [version]
   */
  apply(detail, version = this.version) {
    if (!detail) return;
    if (detail.agent) this.ui.agent.textContent = detail.agent;
    if (detail.modes && Array.isArray(detail.modes.available)) {
      this.modes = detail.modes.available.filter((m) => m && typeof m.id === "string");
    }
    if (version === this.version) {
      const current = detail.mode ?? detail.modes?.current_mode_id;
      if (typeof current === "string") this.current = current;
    }
    this.render();
  }

  /**
   * The user picked `mode`: ask the daemon; the select shows the daemon's answer, not the wish.
   * @param {string} mode
   */
  async choose(mode) {
    if (!mode || mode === this.current) return;
    const request = ++this.request;
    const version = this.version; // a change the stream reports meanwhile is newer than our answer
    this.note("");
    this.ui.field.setAttribute("aria-busy", "true");
    try {
      const detail = await api("POST", `${this.base}/mode`, { mode_id: mode });
      const latest = request === this.request && version === this.version;
      if (latest && typeof detail?.mode === "string") this.setCurrent(detail.mode);
    } catch (error) {
      if (request === this.request) {
        const label = this.modes.find((m) => m.id === mode)?.name || mode;
        this.note(`Mode not changed to ${label}: ${error.message}`, "error");
      }
    } finally {
      if (request === this.request) {
        this.ui.field.removeAttribute("aria-busy");
        this.render(); // back to the mode the session really is in
      }
    }
  }

  render() {
    const { field, select } = this.ui;
    const listed = JSON.stringify(this.modes.map((m) => [m.id, m.name, m.description]));
    if (listed !== this.listed) {
      this.listed = listed;
      replaceChildren(
        select,
        this.modes.map((m) => el("option", { value: m.id, text: m.name || m.id, title: m.description || undefined })),
      );
    }
    const current = this.modes.find((m) => m.id === this.current);
    select.value = current ? current.id : "";
    select.title = current?.description || "";
    select.disabled = !this.usable;
    field.dataset.mode = this.current || "";
    field.hidden = this.modes.length === 0;
  }
}
