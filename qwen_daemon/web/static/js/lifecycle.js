// @ts-check
// The session page's own lifecycle commands: rename in place, archive / unarchive, reopen.
//
// Each is one REST call answered with the session's detail; the page shows what the daemon
// answered, not what was asked. A refusal is explained where the user acted: under the title for
// a rename, in the composer's note for archiving, in the banner for a reopen.

import { editTitle } from "./rename.js";
import { api, el } from "./util.js";

/**
 * A message as a sentence: with its final full stop.
 * @param {unknown} text
 */
function sentence(text) {
  const trimmed = String(text || "").trim();
  return /[.!?]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

export class SessionActions {
  /**
   * @param {{title: HTMLElement, rename: HTMLButtonElement, archive: HTMLButtonElement}} ui the title
   *   heading, the rename and the archive buttons
   * @param {string} base the session's API path
   * @param {{note: (text: string, kind?: string) => void, titled: (title: string) => void,
   *   reopened: (detail: import("./protocol.js").SessionDetail) => void}} hooks
   */
  constructor(ui, base, hooks) {
    this.ui = ui;
    this.base = base;
    this.hooks = hooks;
    this.archived = false;
    this.usable = true;
    this.reopening = false;
    ui.rename.addEventListener("click", () => this.rename());
    ui.archive.addEventListener("click", () => this.toggleArchived());
  }

  /**
   * Take what a session summary or detail says (fields it lacks are left as they are).
   * @param {Partial<import("./protocol.js").SessionSummary> | null | undefined} detail
   */
  apply(detail) {
    if (typeof detail?.archived === "boolean") this.archived = detail.archived;
    this.render();
  }

  /**
   * Whether commands can go now (not while the daemon is away or the session is gone).
   * @param {boolean} usable
   */
  setUsable(usable) {
    this.usable = usable;
    this.render();
  }

  render() {
    const { archive, rename } = this.ui;
    archive.textContent = this.archived ? "Unarchive" : "Archive";
    archive.title = this.archived
      ? "Put it back in the list of sessions"
      : "Move it to the Archived list; its history stays, and a prompt brings it back";
    archive.disabled = !this.usable;
    rename.disabled = !this.usable;
  }

  rename() {
    const { title, rename } = this.ui;
    if (rename.disabled || !title.isConnected || title.hidden) return;
    rename.hidden = true;
    editTitle(title, {
      current: title.textContent,
      label: "New title for this session",
      save: async (text) => {
        const detail = await api("PATCH", this.base, { title: text });
        this.hooks.titled(detail?.title ?? text);
      },
      done: () => {
        rename.hidden = false;
        rename.focus();
      },
    });
  }

  async toggleArchived() {
    const archived = !this.archived;
    this.ui.archive.disabled = true;
    this.hooks.note("");
    try {
      const detail = await api("PATCH", this.base, { archived });
      this.archived = detail?.archived ?? archived;
      this.hooks.note(
        this.archived
          ? "Archived: the dashboard lists it under Archived. Sending a prompt brings it back."
          : "Unarchived: it is back in the list of sessions.",
      );
    } catch (error) {
      this.hooks.note(`Could not ${archived ? "archive" : "unarchive"} this session: ${error.message}`, "error");
    }
    this.render();
  }

  /** A Reopen button for the banner of a failed or closed session. */
  reopenButton() {
    return el("p", { class: "banner-actions" }, el("button", {
      type: "button",
      class: "btn primary reopen-btn",
      text: "Reopen",
      disabled: !this.usable || this.reopening,
      onclick: (/** @type {MouseEvent} */ event) => this.reopen(/** @type {HTMLButtonElement} */ (event.currentTarget)),
    }));
  }

  /** @param {HTMLButtonElement} button */
  async reopen(button) {
    if (this.reopening) return;
    this.reopening = true;
    button.disabled = true;
    button.textContent = "Reopening…";
    try {
      this.hooks.reopened(await api("POST", `${this.base}/reopen`));
    } catch (error) {
      const unavailable = error.code === "agent_unavailable";
      const why = el(
        "div",
        { class: "reopen-error", role: "alert" },
        el("p", { text: `${unavailable ? "Cannot reopen" : "Could not reopen"}: ${sentence(error.message)}` }),
        el("p", {
          class: "hint",
          text: unavailable
            ? "Its agent is no longer in the daemon's configuration. Add it back under [agents] in the config file and restart the daemon, or start a new session with another agent from the dashboard."
            : "Try again; if it keeps failing, look at the daemon's log.",
        }),
      );
      const place = button.closest(".banner-actions");
      place?.parentElement?.querySelector(".reopen-error")?.remove();
      place?.after(why);
    } finally {
      this.reopening = false;
      if (button.isConnected) {
        button.disabled = false;
        button.textContent = "Reopen";
      }
    }
  }
}
