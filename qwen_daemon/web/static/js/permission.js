// A permission request: exactly the options the agent sent, plus Qwen Code's ask_user_question
// questions (meta.qwenQuestions) with their choices. Once resolved — here, in another tab, or by a
// cancel — it collapses to its outcome, so a stale prompt can never be answered.

import { toolContentView } from "./cards.js";
import { ApiError, el, replaceChildren } from "./util.js";

function questionView(requestId, question, index) {
  const name = `q-${requestId}-${index}`;
  const multi = Boolean(question.multiSelect);
  const options = (Array.isArray(question.options) ? question.options : []).map((option, k) =>
    el(
      "label",
      { class: "choice" },
      el("input", { type: multi ? "checkbox" : "radio", name, value: option.label || "", dataset: { index: String(k) } }),
      el("span", { class: "choice-label", text: option.label || "" }),
      option.description ? el("span", { class: "choice-desc muted", text: option.description }) : null,
    ),
  );
  const other = el("input", { type: "text", class: "other-text", "aria-label": "Other answer", placeholder: "Other answer" });
  return el(
    "fieldset",
    { class: "question", dataset: { index: String(index) } },
    el("legend", {}, question.header ? el("span", { class: "chip", text: question.header }) : null, el("span", { text: question.question || "" })),
    options,
    el("label", { class: "choice other" }, el("span", { class: "choice-label", text: multi ? "Also:" : "Or:" }), other),
  );
}

/** Collect {index: answer} like Qwen Code's own dialog (multi-select joined by ", "). */
function collectAnswers(form) {
  const answers = {};
  let missing = 0;
  form.querySelectorAll("fieldset.question").forEach((fieldset) => {
    const picked = [...fieldset.querySelectorAll("input:checked")].map((input) => input.value);
    const other = fieldset.querySelector(".other-text").value.trim();
    if (other) {
      if (fieldset.querySelector('input[type="radio"]')) picked.splice(0, picked.length, other);
      else picked.push(other);
    }
    if (picked.length) answers[fieldset.dataset.index] = picked.join(", ");
    else missing++;
  });
  return { answers, missing };
}

export class PermissionPrompt {
  /** @param answer async (requestId, optionId, answers|undefined) → resolves when the daemon accepted. */
  constructor(event, answer) {
    this.event = event;
    this.requestId = event.request_id;
    this.answer = answer;
    this.resolved = false;
    this.options = Array.isArray(event.options) ? event.options : [];
    const meta = event.meta || {};
    this.questions = Array.isArray(meta.qwenQuestions) ? meta.qwenQuestions : [];
    const tool = event.tool_call || {};
    this.status = el("p", { class: "prompt-status", role: "status" });
    this.questionsEl = el("div", { class: "questions" }, this.questions.map((q, i) => questionView(this.requestId, q, i)));
    this.buttons = this.options.map((option) =>
      el("button", {
        type: "button",
        class: `btn opt opt-${option.kind || "other"}`,
        dataset: { optionId: option.option_id },
        text: option.name || option.option_id,
        onclick: () => this.choose(option),
      }),
    );
    const heading = this.questions.length ? "The agent has a question" : "Permission needed";
    this.body = el(
      "div",
      { class: "permission-body" },
      el("p", { class: "permission-title" }, tool.kind ? el("span", { class: "chip", text: tool.kind }) : null, el("span", { text: tool.title || "" })),
      el("div", { class: "tool-body" }, toolContentView(tool.content)),
      this.questionsEl,
      el("div", { class: "options", role: "group", "aria-label": "Answer" }, this.buttons),
      this.status,
    );
    this.el = el(
      "section",
      { class: "permission open", role: "alertdialog", "aria-label": heading, dataset: { requestId: this.requestId } },
      el("h3", { class: "permission-heading", text: heading }),
      this.body,
    );
  }

  focus() {
    const first = this.questionsEl.querySelector("input") || this.buttons[0];
    if (first) first.focus({ preventScroll: true });
  }

  setBusy(busy) {
    this.buttons.forEach((button) => (button.disabled = busy));
  }

  async choose(option) {
    if (this.resolved) return;
    let answers;
    if (this.questions.length && String(option.kind).startsWith("allow")) {
      const collected = collectAnswers(this.questionsEl);
      if (collected.missing) {
        this.status.textContent = "Answer every question first.";
        return;
      }
      answers = collected.answers;
    }
    this.setBusy(true);
    this.status.textContent = "Sending…";
    try {
      await this.answer(this.requestId, option.option_id, answers);
      this.status.textContent = "Answered; waiting for the agent…";
    } catch (error) {
      if (error instanceof ApiError && (error.status === 409 || error.status === 404)) {
        this.status.textContent =
          error.status === 409 ? "Already answered elsewhere." : "This request is no longer open.";
        return; // the permission_resolved event collapses it
      }
      this.setBusy(false);
      this.status.textContent = `Could not send the answer: ${error.message}`;
    }
  }

  /**
   * Collapse to the outcome. `elsewhere`: answered in another tab or client while shown here;
   * `why`: the text for a request that ended unanswered.
   */
  resolve(optionId, elsewhere, why = "Cancelled — the turn was cancelled or ended") {
    if (this.resolved) return;
    this.resolved = true;
    const option = this.options.find((o) => o.option_id === optionId);
    let outcome = option ? option.name || option.option_id : why;
    if (option && elsewhere) outcome += " (answered in another tab or client)";
    const kind = option ? option.kind || "" : "cancelled";
    this.el.className = `permission resolved outcome-${kind.startsWith("allow") ? "allow" : kind.startsWith("reject") ? "reject" : "cancelled"}`;
    this.el.setAttribute("role", "group");
    this.el.dataset.outcome = optionId || "cancelled";
    this.setBusy(true);
    this.status.textContent = "";
    const heading = this.el.querySelector(".permission-heading");
    const details = el(
      "details",
      { class: "permission-details" },
      el("summary", {}, el("span", { class: "outcome", text: outcome }), el("span", { class: "muted", text: ` — ${this.event.tool_call?.title || "request"}` })),
      this.body,
    );
    replaceChildren(this.el, heading, details);
    heading.textContent = this.questions.length ? "Question answered" : "Permission";
    if (!option) heading.textContent = this.questions.length ? "Question withdrawn" : "Permission withdrawn";
  }
}
