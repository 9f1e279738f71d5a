// @ts-check
// A permission request: exactly the options the agent sent, the questions it asks (`questions`,
// the daemon's one shape for every agent) with their choices, and a plan to approve (`plan`,
// Markdown). Once resolved — here, in another tab, or by a cancel — it collapses to its outcome,
// so a stale prompt can never be answered.
//
// Safe by default: keyboard focus lands on the least permissive "allow once" option (or on the
// first choice of a question), and Enter inside the questions submits with that option, so a
// stray key press can never grant "always" or switch the session to auto-edit.

import { toolContentView } from "./cards.js";
import { renderMarkdown } from "./markdown.js";
import { ApiError, el, replaceChildren } from "./util.js";

/**
 * @typedef {import("./protocol.js").PermissionRequest} PermissionRequest
 * @typedef {PermissionRequest["options"][number]} Option
 * @typedef {NonNullable<PermissionRequest["questions"]>[number]} Question
 * @typedef {Record<string, string | string[]>} Answers question index → the chosen label(s)
 */

/**
 * The option Enter and focus may pick: an "allow once", preferring Qwen Code's `proceed_once`
 * (its plan approval offers two: "restore previous mode", which may be auto-edit or yolo, and
 * "manually approve edits"); never an "always". Null when the agent offers no such option.
 * @param {Option[]} options
 */
export function safeOption(options) {
  const once = options.filter((o) => o.kind === "allow_once");
  return once.find((o) => o.option_id === "proceed_once") || once[0] || null;
}

/**
 * @param {string} requestId
 * @param {Question} question
 * @param {number} index
 */
function questionView(requestId, question, index) {
  const name = `q-${requestId}-${index}`;
  const multi = question.multi_select === true;
  const type = multi ? "checkbox" : "radio";
  const choices = (Array.isArray(question.options) ? question.options : []).map((option) =>
    el(
      "label",
      { class: "choice" },
      el("input", { type, name, class: "pick", value: option.label || "" }),
      el("span", { class: "choice-label", text: option.label || "" }),
      option.description ? el("span", { class: "choice-desc muted", text: option.description }) : null,
    ),
  );
  const otherPick = el("input", { type, name, class: "pick other-pick", value: "", "aria-label": "Other" });
  const otherText = el("input", {
    type: "text",
    class: "other-text",
    "aria-label": `Other answer to: ${question.question || `question ${index + 1}`}`,
    placeholder: "Other…",
    maxlength: "2000",
  });
  otherText.addEventListener("input", () => (otherPick.checked = otherText.value.trim() !== ""));
  return el(
    "fieldset",
    { class: "question", dataset: { index: String(index), multi: String(multi) } },
    el(
      "legend",
      {},
      question.header ? el("span", { class: "chip", text: question.header }) : null,
      el("span", { class: "question-text", text: question.question || "" }),
    ),
    multi ? el("p", { class: "question-hint muted", text: "Choose any that apply." }) : null,
    choices,
    el("div", { class: "choice other" }, el("label", {}, otherPick, el("span", { class: "choice-label", text: "Other" })), otherText),
  );
}

/**
 * One question's answer: the chosen label (a list of them for multi-select), or undefined.
 * @param {HTMLFieldSetElement} fieldset
 */
function answerOf(fieldset) {
  const other = /** @type {HTMLInputElement} */ (fieldset.querySelector(".other-text")).value.trim();
  const picked = [.../** @type {NodeListOf<HTMLInputElement>} */ (fieldset.querySelectorAll("input.pick:checked"))]
    .map((input) => (input.classList.contains("other-pick") ? other : input.value))
    .filter((value) => value !== "");
  if (!picked.length) return undefined;
  return fieldset.dataset.multi === "true" ? picked : picked[0];
}

/**
 * {answers: {"0": "SQLite", "1": ["A", "B"]}, missing: the fieldsets left unanswered}.
 * @param {HTMLElement} container
 */
function collectAnswers(container) {
  /** @type {Answers} */
  const answers = {};
  /** @type {HTMLFieldSetElement[]} */
  const missing = [];
  /** @type {NodeListOf<HTMLFieldSetElement>} */ (container.querySelectorAll("fieldset.question")).forEach((fieldset) => {
    const answer = answerOf(fieldset);
    fieldset.classList.toggle("missing", answer === undefined);
    if (answer === undefined) missing.push(fieldset);
    else answers[/** @type {string} set by questionView */ (fieldset.dataset.index)] = answer;
  });
  return { answers, missing };
}

export class PermissionPrompt {
  /**
   * @param {PermissionRequest} event the permission_request event (or a pending request of a detail)
   * @param {(requestId: string, optionId: string, answers?: Answers) => Promise<void>} answer resolves
   *   when the daemon accepted
   */
  constructor(event, answer) {
    this.event = event;
    this.requestId = event.request_id;
    this.answer = answer;
    this.resolved = false;
    this.options = Array.isArray(event.options) ? event.options : [];
    this.questions = Array.isArray(event.questions) ? event.questions : [];
    this.plan = typeof event.plan === "string" && event.plan.trim() ? event.plan : null;
    this.safe = safeOption(this.options);
    /** @type {Partial<import("./protocol.js").ToolCall>} */
    const tool = event.tool_call || {};
    this.status = el("p", { class: "prompt-status", role: "status" });
    this.questionsEl = el("div", { class: "questions" }, this.questions.map((q, i) => questionView(this.requestId, q, i)));
    this.questionsEl.addEventListener("keydown", (e) => this.onKey(e));
    this.buttons = this.options.map((option) =>
      el("button", {
        type: "button",
        class: `btn opt opt-${option.kind || "other"}`,
        dataset: { optionId: option.option_id },
        text: option.name || option.option_id,
        onclick: () => this.choose(option),
      }),
    );
    const heading = this.questions.length ? "The agent has a question" : this.plan ? "Approve the plan?" : "Permission needed";
    this.body = el(
      "div",
      { class: "permission-body" },
      el("p", { class: "permission-title" }, tool.kind ? el("span", { class: "chip", text: tool.kind }) : null, el("span", { text: tool.title || "" })),
      el("div", { class: "tool-body" }, toolContentView(this.plan ? withoutPlanText(tool.content, this.plan) : tool.content)),
      this.plan ? this.planView() : null,
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

  planView() {
    const body = el("div", { class: "md" });
    renderMarkdown(body, /** @type {string} shown only when there is a plan */ (this.plan));
    return el("section", { class: "plan-proposal", "aria-label": "Proposed plan" }, body);
  }

  /**
   * Enter in a question submits with the safe option (never an "always" one).
   * @param {KeyboardEvent} event
   */
  onKey(event) {
    if (event.key !== "Enter" || event.shiftKey || event.altKey || event.ctrlKey || event.metaKey || event.isComposing) return;
    event.preventDefault();
    if (this.safe) this.choose(this.safe);
  }

  focus() {
    const safeButton = this.safe && this.buttons[this.options.indexOf(this.safe)];
    const fallback = this.buttons.find((_, i) => this.options[i].kind !== "allow_always");
    const target = this.questionsEl.querySelector("input") || safeButton || fallback;
    if (target) target.focus({ preventScroll: true });
  }

  /** @param {boolean} busy */
  setBusy(busy) {
    this.buttons.forEach((button) => (button.disabled = busy));
    this.questionsEl.querySelectorAll("input").forEach((input) => (input.disabled = busy));
  }

  /** @param {Option} option */
  async choose(option) {
    if (this.resolved) return;
    /** @type {Answers | undefined} */
    let answers;
    if (this.questions.length && String(option.kind).startsWith("allow")) {
      const collected = collectAnswers(this.questionsEl);
      if (collected.missing.length) {
        this.status.textContent = "Answer every question first.";
        /** @type {HTMLInputElement} */ (collected.missing[0].querySelector("input")).focus();
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
   * @param {string | null} optionId
   * @param {boolean} elsewhere
   * @param {string} [why]
   * @param {Answers | null} [answers]
   */
  resolve(optionId, elsewhere, why = "Cancelled — the turn was cancelled or ended", answers = null) {
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
    const heading = /** @type {HTMLElement} */ (this.el.querySelector(".permission-heading"));
    const details = el(
      "details",
      { class: "permission-details" },
      el("summary", {}, el("span", { class: "outcome", text: outcome }), el("span", { class: "muted", text: ` — ${this.event.tool_call?.title || "request"}` })),
      this.body,
    );
    replaceChildren(this.el, heading, details, option ? givenAnswers(this.questions, answers) : null);
    const what = this.questions.length ? "Question" : this.plan ? "Plan" : "Permission";
    heading.textContent = !option ? `${what} withdrawn` : this.questions.length ? "Question answered" : what;
  }
}

/**
 * The answers the agent got (`{"0": "SQLite", "1": ["A", "B"]}`), one line per question.
 * @param {Question[]} questions
 * @param {Answers | null | undefined} answers
 */
function givenAnswers(questions, answers) {
  if (!answers || typeof answers !== "object" || !Object.keys(answers).length) return null;
  const lines = Object.entries(answers).map(([index, value]) => {
    /** @type {Partial<Question>} */
    const question = questions[Number(index)] || {};
    return el(
      "li",
      {},
      el("span", { class: "chip", text: question.header || `Question ${Number(index) + 1}` }),
      el("span", { text: Array.isArray(value) ? value.join(", ") : String(value) }),
    );
  });
  return el("ul", { class: "given-answers", "aria-label": "Answers given" }, lines);
}

/**
 * Tool content minus the plain-text copy of the plan (Qwen Code sends it there too).
 * @param {unknown} content
 * @param {string} plan
 */
function withoutPlanText(content, plan) {
  if (!Array.isArray(content)) return content;
  return content.filter((item) => !(item?.type === "content" && item.content?.type === "text" && item.content.text?.trim() === plan.trim()));
}
