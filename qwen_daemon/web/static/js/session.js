// @ts-check
// The session page: wires the live stream to the transcript, the header and the prompt box.
//
// Commands (prompt, cancel, permission answers, mode switches) go over the REST API, which answers each with a
// status we can explain (a refused prompt keeps its text); the WebSocket only carries events and
// heartbeats. Attention — a permission request or a finished turn while the tab is hidden — marks
// the tab title and, if the user allowed it, shows a notification (unless the daemon pushes them
// to this device: notify.js).

import { AwayBanner } from "./away.js";
import { SessionActions } from "./lifecycle.js";
import { ModePicker } from "./modes.js";
import { clearNotifications, mountNotify, pushActive, showNotification } from "./notify.js";
import { SessionStream } from "./stream.js";
import { Transcript } from "./transcript.js";
import { BUSY_STATES, SESSION_STATE } from "./protocol.js";
import { STATE_LABELS, api, el, replaceChildren } from "./util.js";

/** The template's element with this id (session.html has every one asked for here). */
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const ui = {
  main: $("main"),
  title: $("session-title"),
  state: $("state"),
  conn: $("conn"),
  connLabel: /** @type {HTMLElement} */ (document.querySelector("#conn .conn-label")),
  rename: /** @type {HTMLButtonElement} */ ($("rename")),
  archive: /** @type {HTMLButtonElement} */ ($("archive")),
  banner: $("banner"),
  away: $("away"),
  transcript: $("transcript"),
  empty: $("empty"),
  working: $("working"),
  workingLabel: /** @type {HTMLElement} */ (document.querySelector("#working span:last-child")),
  form: $("prompt-form"),
  prompt: /** @type {HTMLTextAreaElement} */ ($("prompt")),
  send: /** @type {HTMLButtonElement} */ ($("send")),
  cancel: /** @type {HTMLButtonElement} */ ($("cancel")),
  note: $("composer-note"),
  agent: $("agent-name"),
  modeField: $("mode-field"),
  mode: /** @type {HTMLSelectElement} */ ($("mode")),
};
const sessionId = /** @type {string} */ (ui.main.dataset.sessionId);
const base = `/api/sessions/${encodeURIComponent(sessionId)}`;
const BUSY = new Set(BUSY_STATES);
/** @type {Record<string, string>} */
const CONN_LABELS = { connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…", offline: "Offline" };

/** @type {import("./protocol.js").SessionDetail} */
const first = JSON.parse(ui.main.dataset.detail || "{}"); // the detail as the page was rendered

/** @type {import("./protocol.js").SessionState} */
let state = SESSION_STATE.STARTING;
let ended = false; // the stream ended for good (deleted, logged out): nothing here can change
let away = false; // the daemon cannot be reached now: no state is known, no command can go
let sending = false; // a prompt is on its way
/** @type {string | null} */
let failure = first.failure || null; // why the session failed, as its detail last said
let baseTitle = document.title;
let marked = false;
let replayUntil = 0; // the hello's last_seq: until then we are replaying history
let greetedAt = 0; // the last_seq of the latest hello, whose state is newer than any event up to it
let updates = 0; // session_updated events applied: a detail fetched before one of them is older

// --- permission answers given in this tab (kept across reloads of the tab) --------------------

const answeredKey = `qwen-daemon.answered.${sessionId}`;
/** @type {Set<string>} */
const answered = new Set(JSON.parse(sessionStorage.getItem(answeredKey) || "[]"));
/**
 * @param {string} requestId
 * @param {boolean} yes
 */
function markAnswered(requestId, yes) {
  if (yes) answered.add(requestId);
  else answered.delete(requestId);
  sessionStorage.setItem(answeredKey, JSON.stringify([...answered].slice(-200)));
}

/**
 * @param {string} requestId
 * @param {string} optionId
 * @param {Record<string, string | string[]>} [answers]
 */
async function answerPermission(requestId, optionId, answers) {
  markAnswered(requestId, true); // before the POST: its event may beat its response
  const body = answers ? { option_id: optionId, answers } : { option_id: optionId };
  try {
    await api("POST", `${base}/permissions/${encodeURIComponent(requestId)}`, body);
  } catch (error) {
    markAnswered(requestId, false);
    throw error;
  }
}

// --- header, state, notes --------------------------------------------------------------------

/** @param {import("./protocol.js").SessionState} value */
function setState(value) {
  state = value;
  render();
}

/** The header, the running indicator and the composer, from the state and the connection. */
function render() {
  const known = !away || ended;
  const shown = known ? state : "unknown";
  ui.state.className = `badge state-${shown}`;
  ui.state.textContent = known ? STATE_LABELS[state] || state : "unknown";
  ui.state.title = known ? "" : `Not known while the daemon cannot be reached (last known: ${STATE_LABELS[state] || state})`;
  const busy = BUSY.has(state);
  ui.working.hidden = !busy || !known; // nobody knows whether it is still working
  ui.workingLabel.textContent = state === SESSION_STATE.AWAITING_PERMISSION ? "Waiting for your answer" : "Agent is working…";
  ui.cancel.hidden = !busy;
  ui.cancel.disabled = away;
  document.body.dataset.state = shown;
  document.body.dataset.conn = away ? "away" : "ok";
  const usable = !ended && state !== SESSION_STATE.CLOSED && state !== SESSION_STATE.FAILED;
  ui.prompt.disabled = !usable; // stays editable while away: the text waits for the daemon
  ui.send.disabled = !usable || away || sending;
  modes.setUsable(usable && !away);
  actions.setUsable(!ended && !away);
}

/**
 * @param {import("./stream.js").Status} status
 * @param {string} detail
 * @param {number} retryAt
 */
function setConn(status, detail, retryAt) {
  const lost = status === "reconnecting" || status === "offline";
  if (lost) awayBanner.show(retryAt);
  else awayBanner.hide();
  if (lost !== away) {
    away = lost;
    render();
  }
  ui.conn.className = `conn conn-${status}`;
  ui.conn.dataset.status = status;
  ui.connLabel.textContent = CONN_LABELS[status] || status;
  ui.conn.title = detail ? `${CONN_LABELS[status] || status} (${detail})` : CONN_LABELS[status] || status;
}

/**
 * The banner by the composer: what this session can no longer do, and what to do about it.
 * @param {string} text
 * @param {...import("./util.js").Child} more
 */
function showBanner(text, ...more) {
  replaceChildren(ui.banner, el("p", { class: "banner-text", text }), more);
  ui.banner.hidden = false;
}

function hideBanner() {
  ui.banner.hidden = true;
  ui.banner.replaceChildren();
}

/** @param {string | null} reason */
function showFailed(reason) {
  showBanner(
    "This session has failed, so it takes no prompts until it is reopened.",
    el("p", { class: "failure" }, el("strong", { text: "Reason: " }), reason || "not recorded"),
    actions.reopenButton(),
    el("p", { class: "hint", text: "Reopen puts it back to idle; your next prompt starts its agent again with the conversation so far." }),
  );
}

function showClosed() {
  showBanner(
    "This session is closed; its history stays readable here.",
    actions.reopenButton(),
    el("p", { class: "hint", text: "Reopen it to send it prompts again." }),
  );
}

/**
 * @param {string} text
 * @param {string} [kind]
 */
function setNote(text, kind = "info") {
  ui.note.textContent = text;
  ui.note.className = `composer-note note-${kind}`;
  ui.note.hidden = !text;
}

function updateEmpty() {
  ui.empty.hidden = transcript.count > 0 || stream.lastSeq < replayUntil;
}

// --- attention: title marker and notifications ------------------------------------------------

/**
 * @param {string} title
 * @param {string | null} body
 */
function attention(title, body) {
  if (document.visibilityState === "visible") return;
  if (!marked) {
    marked = true;
    document.title = `● ${baseTitle}`;
  }
  // with push on, the daemon notifies this device itself (the page told it that it is hidden)
  pushActive()
    .then((pushed) => /** @type {unknown} */ (pushed || showNotification(title, { body: body ?? undefined, tag: `qwen-daemon-${sessionId}`, data: { url: location.pathname, session_id: sessionId } })))
    .catch(() => {
      // notifications refused here; the title marker remains
    });
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && marked) {
    marked = false;
    document.title = baseTitle;
  }
  if (document.visibilityState === "visible") clearNotifications(sessionId).catch(() => {});
});

mountNotify(); // "Notify me on this device": the bell in the header
clearNotifications(sessionId).catch(() => {});

// --- transcript and stream ---------------------------------------------------------------------

const modes = new ModePicker({ field: ui.modeField, select: ui.mode, agent: ui.agent }, base, setNote);
modes.apply(first);

const awayBanner = new AwayBanner(ui.away, {
  retryNow: () => stream.wake(),
  hint: "Send and Cancel are off until it is back; what you type is kept.",
});

const actions = new SessionActions({ title: ui.title, rename: ui.rename, archive: ui.archive }, base, {
  note: setNote,
  titled: setTitle,
  reopened(detail) {
    failure = null;
    hideBanner();
    setState(detail.state || SESSION_STATE.IDLE);
    setNote("Reopened: your next prompt starts its agent again.");
    stream.restart(); // if it had stopped following a closed session
  },
});
actions.apply(first);

/** @param {string} title */
function setTitle(title) {
  ui.title.textContent = title;
  baseTitle = `${title} · qwen-daemon`;
  if (!marked) document.title = baseTitle;
}

/**
 * A state event: a session that fails or comes back while watched changes its banner too.
 * @param {import("./protocol.js").SessionState} value
 * @param {boolean} live
 */
function stateEvent(value, live) {
  const was = state;
  setState(value);
  if (!live || value === was) return;
  if (value === SESSION_STATE.FAILED) loadDetail(); // shows the banner, with the reason
  else if (value === SESSION_STATE.CLOSED) showClosed();
  else if (was === SESSION_STATE.FAILED || was === SESSION_STATE.CLOSED) {
    failure = null;
    hideBanner(); // reopened, here or elsewhere
  }
}

/**
 * Renamed or (un)archived, here or elsewhere (another tab, the dashboard, the CLI).
 * @param {Partial<import("./protocol.js").SessionSummary>} event a session_updated event
 * @param {boolean} live
 */
function updated(event, live) {
  updates += 1;
  if (typeof event.title === "string" && event.title !== ui.title.textContent) setTitle(event.title);
  if (live && typeof event.archived === "boolean" && event.archived !== actions.archived) {
    setNote(event.archived ? "Archived: listed under Archived; a prompt brings it back." : "Unarchived: back in the list of sessions.");
  }
  actions.apply(event);
}

/** The session's detail, fetched at each (re)connect: modes, failure, archived. */
async function loadDetail() {
  const version = modes.version; // a mode change seen meanwhile is newer than this answer
  const updatesBefore = updates; // so is a rename or (un)archive seen meanwhile
  /** @type {import("./protocol.js").SessionDetail} */
  let detail;
  try {
    detail = await api("GET", base);
  } catch {
    return null; // the stream finds out why (gone, logged out, offline) and says so
  }
  modes.apply(detail, version);
  if (updates === updatesBefore) actions.apply(detail);
  failure = detail.failure || null;
  if (detail.state === SESSION_STATE.FAILED && state === SESSION_STATE.FAILED) showFailed(failure);
  return detail;
}

const transcript = new Transcript(ui.transcript, {
  answer: answerPermission,
  answeredHere: (requestId) => answered.has(requestId),
  onPrompt(prompt, live) {
    if (!live) return;
    /** @type {Partial<import("./protocol.js").ToolCall>} */
    const tool = prompt.event.tool_call || {};
    attention("The agent needs your answer", tool.title || ui.title.textContent);
    const active = document.activeElement;
    if (!active || active === document.body) prompt.focus();
  },
});
// mode lines in the transcript use the names the mode selector shows (known once it is filled)
new MutationObserver(() => transcript.nameModes(ui.mode.options)).observe(ui.mode, { childList: true });
transcript.nameModes(ui.mode.options);

const stream = new SessionStream(sessionId, {
  onEvent(event, live) {
    // the greeting's state is the session's now: older state events (replayed) must not undo it
    if (event.type === "state" && event.seq > greetedAt) stateEvent(event.state, live);
    if (event.type === "session_updated" && event.seq > greetedAt) updated(event, live);
    modes.event(event, live);
    transcript.apply(event, live);
    if (live && event.type === "turn_ended") {
      /** @type {Record<string, string>} */
      const ends = { cancelled: "Turn cancelled", interrupted: "Turn interrupted: the daemon stopped" };
      attention(ends[event.stop_reason] || "The agent finished", ui.title.textContent);
    }
    updateEmpty();
  },
  onHello(hello) {
    if (replayUntil === 0) replayUntil = hello.last_seq;
    greetedAt = hello.last_seq;
    /** @type {Partial<import("./protocol.js").SessionSummary>} */
    const session = hello.session || {};
    if (session.title) setTitle(session.title);
    setState(session.state || state);
    modes.hello(session);
    actions.apply(session);
    if (session.state === SESSION_STATE.FAILED) showFailed(failure); // the detail fetched below may update it
    else if (session.state === SESSION_STATE.CLOSED) showClosed();
    else hideBanner();
    loadDetail();
    updateEmpty();
  },
  onStatus: setConn,
  onReset() {
    transcript.reset();
    replayUntil = 0;
    greetedAt = 0;
  },
  onMissing(count) {
    transcript.missingHistory(count);
  },
  onNotice(error) {
    // e.g. storage_unavailable: the daemon holds what the agent sends and retries; say so, keep going
    setNote(`The daemon cannot save right now: ${error.message}. Nothing is lost; it retries every second.`, "error");
  },
  onEnd(reason) {
    // nobody can answer these any more: never leave a prompt that looks answerable
    for (const prompt of transcript.openPrompts) prompt.resolve(null, false, "Expired — the session ended");
    if (reason === "closed") sessionClosed();
    else if (reason === "gone") gone();
    else loggedOut();
  },
});

/**
 * The stream ended for good: no reconnecting, no "can't reach" banner, nothing to send.
 * @param {string} label
 */
function endView(label) {
  ended = true;
  away = false;
  awayBanner.hide();
  ui.conn.className = "conn conn-ended";
  ui.conn.dataset.status = label.toLowerCase().replace(" ", "-");
  ui.connLabel.textContent = label;
  render();
}

/** The daemon ended the stream because the session closed: deleted (then it is unknown now), or
 * closed (it can be reopened). */
async function sessionClosed() {
  /** @type {import("./protocol.js").SessionDetail} */
  let detail;
  try {
    detail = await api("GET", base);
  } catch (error) {
    if (error.status === 404) gone();
    else if (error.status === 401) loggedOut();
    else stream.restart(); // cannot tell now: follow it again, the stream says what it finds
    return;
  }
  setState(detail.state);
  if (detail.state !== SESSION_STATE.CLOSED) {
    stream.restart();
    return;
  }
  ui.connLabel.textContent = "Closed";
  showClosed();
}

function gone() {
  state = SESSION_STATE.CLOSED;
  endView("Gone");
  showBanner(
    "This session no longer exists: it was deleted.",
    el("p", {}, el("a", { class: "btn", href: "/", text: "All sessions" })),
  );
}

function loggedOut() {
  endView("Logged out");
  showBanner(
    "This browser is no longer logged in to the daemon: its access token was changed, or this device was signed out.",
    el("p", { class: "hint" }, "On the daemon's machine run ", el("code", { text: "qwen-daemon url" }), " and open the address it prints."),
  );
}

// Keep the view pinned to the newest output while the reader is at the bottom. Our own scrolls
// (autoY) must not count as the reader leaving: content may grow again before their event fires.
let pinned = true;
let autoY = 0;
window.addEventListener("scroll", () => {
  if (pinned && window.scrollY + 2 >= autoY) return;
  pinned = window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
}, { passive: true });
new ResizeObserver(() => {
  if (!pinned) return;
  window.scrollTo({ top: document.documentElement.scrollHeight });
  autoY = window.scrollY;
}).observe(ui.main);

// --- the prompt box -----------------------------------------------------------------------------

async function sendPrompt() {
  const text = ui.prompt.value;
  if (!text.trim() || ui.prompt.disabled || sending) return;
  if (away) {
    setNote("Not sent: the daemon cannot be reached. Your text is kept; send it once it is back.", "warn");
    return;
  }
  setNote("");
  sending = true;
  render();
  try {
    await api("POST", `${base}/prompt`, { text });
    if (ui.prompt.value === text) ui.prompt.value = "";
    actions.apply({ archived: false }); // a prompt brings an archived session back
    pinned = true;
  } catch (error) {
    if (error.code === "session_busy") {
      setNote("Not sent: the agent is still working on the last prompt. Wait for it to finish, or press Esc to cancel it. Your text is kept.", "warn");
    } else if (error.status === 0) {
      setNote("Not sent: the daemon cannot be reached. Your text is kept; send it again once connected.", "warn");
      stream.wake();
    } else {
      setNote(`Not sent: ${error.message}. Your text is kept.`, "error");
    }
  } finally {
    sending = false;
    render();
  }
}

async function cancelTurn() {
  if (!BUSY.has(state) || away) return;
  setNote("Cancelling…");
  try {
    await api("POST", `${base}/cancel`);
    setNote("");
  } catch (error) {
    setNote(`Could not cancel: ${error.message}`, "error");
  }
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  sendPrompt();
});
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey && !event.isComposing) {
    event.preventDefault();
    sendPrompt();
  }
});
ui.cancel.addEventListener("click", cancelTurn);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && BUSY.has(state) && !event.defaultPrevented) {
    event.preventDefault();
    cancelTurn();
  }
});

setState(/** @type {import("./protocol.js").SessionState} */ (ui.state.className.replace(/^.*state-/, "") || SESSION_STATE.STARTING));
stream.start();
