// @ts-check
// Renaming a session in place, on the dashboard and on the session page.
//
// A text box takes the title's place: Enter (or leaving the box) saves through the API, Escape
// cancels. A refused or failed save keeps the box open with the typed text and says why under it,
// so nothing typed is lost and the user can fix it or press Escape.

import { el } from "./util.js";

const MAX_TITLE = 200; // as the daemon allows

/**
 * The title the daemon will store: whitespace collapsed, ends trimmed.
 * @param {unknown} text
 */
export function cleanTitle(text) {
  return String(text).replace(/\s+/g, " ").trim();
}

/**
 * Edit `shown` (the element showing the title) in place.
 * @param {HTMLElement} shown
 * @param {{current: string, label: string, save: (title: string) => Promise<void>, done?: () => void}} options
 *   `save` rejects with an Error whose message is shown; `done` is called once the box is gone
 *   (saved or cancelled).
 * @returns {HTMLInputElement} the text box
 */
export function editTitle(shown, { current, label, save, done }) {
  let busy = false;
  let finished = false;
  const error = el("p", { class: "edit-error", role: "alert", hidden: true });
  const input = el("input", {
    type: "text",
    class: "title-input",
    value: current,
    maxlength: MAX_TITLE,
    "aria-label": label,
    spellcheck: "false",
    enterkeyhint: "done",
  });
  const box = el("span", { class: "title-edit" }, input, error);

  function finish() {
    if (finished) return;
    finished = true;
    box.remove();
    shown.hidden = false;
    done?.();
  }

  /** @param {string} message */
  function fail(message) {
    error.textContent = message;
    error.hidden = false;
    input.setAttribute("aria-invalid", "true");
  }

  async function commit() {
    if (busy || finished) return;
    const title = cleanTitle(input.value);
    if (title === cleanTitle(current)) return finish();
    if (!title) return fail("A title cannot be empty. Type one, or press Esc to keep the old one.");
    busy = true;
    box.setAttribute("aria-busy", "true");
    try {
      await save(title);
      finish();
    } catch (failure) {
      fail(`Not renamed: ${failure.message}. Press Esc to keep the old title.`);
    } finally {
      busy = false;
      box.removeAttribute("aria-busy");
    }
  }

  input.addEventListener("keydown", (event) => {
    if (event.isComposing) return;
    if (event.key === "Enter") {
      event.preventDefault();
      commit();
    } else if (event.key === "Escape") {
      event.preventDefault(); // the session page's Escape (cancel the turn) leaves it alone
      event.stopPropagation();
      finish();
    }
  });
  input.addEventListener("input", () => {
    error.hidden = true;
    input.removeAttribute("aria-invalid");
  });
  input.addEventListener("blur", () => {
    if (error.hidden) commit(); // after a refusal, leaving the box does not retry the same text
  });

  shown.hidden = true;
  shown.after(box);
  input.focus();
  input.select();
  return input;
}
