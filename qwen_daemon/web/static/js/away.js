// @ts-check
// The "can't reach the daemon" banner, shared by the dashboard and the session page.
//
// Why a banner and not only the small connection dot: while the daemon is away nothing the page
// shows is current, and a command would fail. The banner says so in words, says what happens next
// (the next attempt, counted down) and offers to try at once. The page decides when it shows.

import { el, replaceChildren } from "./util.js";

export class AwayBanner {
  /**
   * @param {HTMLElement} node the banner's (hidden) element
   * @param {{retryNow: () => void, hint?: string}} options what "Retry now" does; an optional line
   *   under the message
   */
  constructor(node, { retryNow, hint }) {
    this.node = node;
    this.retryAt = 0;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.timer = undefined;
    this.text = el("span", { class: "away-text" });
    replaceChildren(
      node,
      el(
        "div",
        { class: "away-line" },
        this.text,
        el("button", { type: "button", class: "btn small", text: "Retry now", onclick: () => retryNow() }),
      ),
      hint && el("p", { class: "hint", text: hint }),
    );
  }

  get shown() {
    return !this.node.hidden;
  }

  /** Show (or update) the banner; `retryAt`: when the next attempt is due (ms epoch), 0 if unknown. */
  show(retryAt = 0) {
    this.retryAt = retryAt;
    this.node.hidden = false;
    this.tick();
    if (!this.timer) this.timer = setInterval(() => this.tick(), 250);
  }

  hide() {
    this.node.hidden = true;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  tick() {
    const seconds = Math.ceil((this.retryAt - Date.now()) / 1000);
    const next = seconds > 0 ? `reconnecting in ${seconds} s…` : "reconnecting…";
    const text = navigator.onLine === false ? `This device is offline — ${next}` : `Can't reach the daemon — ${next}`;
    if (this.text.textContent !== text) this.text.textContent = text; // unchanged text is not re-announced
  }
}
