// The session page: wires the live stream to the transcript, the header and the prompt box.
//
// Commands (prompt, cancel, permission answers, mode switches) go over the REST API, which answers each with a
// status we can explain (a refused prompt keeps its text); the WebSocket only carries events and
// heartbeats. Attention — a permission request or a finished turn while the tab is hidden — marks
// the tab title and, if the user allowed it, shows a browser notification.

import { ModePicker } from "./modes.js";
import { SessionStream } from "./stream.js";
import { Transcript } from "./transcript.js";
import { STATE_LABELS, api } from "./util.js";

const $ = (id) => document.getElementById(id);
const ui = {
  main: $("main"),
  title: $("session-title"),
  state: $("state"),
  conn: $("conn"),
  connLabel: document.querySelector("#conn .conn-label"),
  notify: $("notify"),
  banner: $("banner"),
  transcript: $("transcript"),
  empty: $("empty"),
  working: $("working"),
  form: $("prompt-form"),
  prompt: $("prompt"),
  send: $("send"),
  cancel: $("cancel"),
  note: $("composer-note"),
  agent: $("agent-name"),
  modeField: $("mode-field"),
  mode: $("mode"),
};
const sessionId = ui.main.dataset.sessionId;
const base = `/api/sessions/${encodeURIComponent(sessionId)}`;
const BUSY = new Set(["running", "awaiting_permission"]);
const CONN_LABELS = { connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…", offline: "Offline" };

let state = "starting";
let ended = false;
let baseTitle = document.title;
let marked = false;
let replayUntil = 0; // the hello's last_seq: until then we are replaying history

// --- permission answers given in this tab (kept across reloads of the tab) --------------------

const answeredKey = `qwen-daemon.answered.${sessionId}`;
const answered = new Set(JSON.parse(sessionStorage.getItem(answeredKey) || "[]"));
function markAnswered(requestId, yes) {
  if (yes) answered.add(requestId);
  else answered.delete(requestId);
  sessionStorage.setItem(answeredKey, JSON.stringify([...answered].slice(-200)));
}

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

function setState(value) {
  state = value;
  ui.state.className = `badge state-${value}`;
  ui.state.textContent = STATE_LABELS[value] || value;
  const busy = BUSY.has(value);
  ui.working.hidden = !busy;
  ui.cancel.hidden = !busy;
  document.body.dataset.state = value;
  const usable = !ended && value !== "closed" && value !== "failed";
  ui.prompt.disabled = !usable;
  ui.send.disabled = !usable;
  modes.setUsable(usable);
}

function setConn(status, detail) {
  ui.conn.className = `conn conn-${status}`;
  ui.conn.dataset.status = status;
  ui.connLabel.textContent = CONN_LABELS[status] || status;
  ui.conn.title = detail ? `${CONN_LABELS[status] || status} (${detail})` : CONN_LABELS[status] || status;
}

function showBanner(text, hint) {
  ui.banner.replaceChildren(document.createTextNode(text));
  if (hint) {
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent = hint;
    ui.banner.append(p);
  }
  ui.banner.hidden = false;
}

function setNote(text, kind = "info") {
  ui.note.textContent = text;
  ui.note.className = `composer-note note-${kind}`;
  ui.note.hidden = !text;
}

function updateEmpty() {
  ui.empty.hidden = transcript.count > 0 || stream.lastSeq < replayUntil;
}

// --- attention: title marker and notifications ------------------------------------------------

function attention(title, body) {
  if (document.visibilityState === "visible") return;
  if (!marked) {
    marked = true;
    document.title = `● ${baseTitle}`;
  }
  if ("Notification" in window && Notification.permission === "granted") {
    try {
      const notification = new Notification(title, { body, tag: `qwen-daemon-${sessionId}` });
      notification.onclick = () => {
        window.focus();
        notification.close();
      };
    } catch {
      // some platforms allow notifications only from a service worker; the title marker remains
    }
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && marked) {
    marked = false;
    document.title = baseTitle;
  }
});

if ("Notification" in window && window.isSecureContext && Notification.permission === "default") {
  ui.notify.hidden = false;
  ui.notify.addEventListener("click", async () => {
    await Notification.requestPermission();
    ui.notify.hidden = Notification.permission !== "default";
  });
}

// --- transcript and stream ---------------------------------------------------------------------

const modes = new ModePicker({ field: ui.modeField, select: ui.mode, agent: ui.agent }, base, setNote);

const transcript = new Transcript(ui.transcript, {
  answer: answerPermission,
  answeredHere: (requestId) => answered.has(requestId),
  onPrompt(prompt, live) {
    if (!live) return;
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
    if (event.type === "state") setState(event.state);
    modes.event(event, live);
    transcript.apply(event, live);
    if (live && event.type === "turn_ended") {
      attention(event.stop_reason === "cancelled" ? "Turn cancelled" : "The agent finished", ui.title.textContent);
    }
    updateEmpty();
  },
  onHello(hello) {
    if (replayUntil === 0) replayUntil = hello.last_seq;
    const session = hello.session || {};
    if (session.title) {
      ui.title.textContent = session.title;
      baseTitle = `${session.title} · qwen-daemon`;
      if (!marked) document.title = baseTitle;
    }
    setState(session.state || state);
    modes.hello(session);
    if (session.state === "failed") {
      showBanner("This session could not start, so it cannot take prompts.", "See the error below; once it is fixed, create a new session.");
    } else if (session.state === "closed") {
      showBanner("This session is closed; its history stays readable here.", "Start a new session from the dashboard to continue.");
    }
    updateEmpty();
  },
  onStatus: setConn,
  onReset() {
    transcript.reset();
    replayUntil = 0;
  },
  onMissing(count) {
    transcript.missingHistory(count);
  },
  onEnd(reason) {
    ended = true;
    // nobody can answer these any more: never leave a prompt that looks answerable
    for (const prompt of transcript.openPrompts) prompt.resolve(null, false, "Expired — the session ended");
    if (reason === "closed") {
      setState("closed");
      setConn("closed", "");
      ui.connLabel.textContent = "Closed";
      showBanner("This session is closed; its history stays readable here.", "Start a new session from the dashboard to continue.");
    } else if (reason === "gone") {
      setState("closed");
      ui.connLabel.textContent = "Gone";
      showBanner("This session no longer exists: it was deleted, or the daemon was restarted.", "Go back to the dashboard to start a new one.");
    } else {
      setState(state);
      ui.connLabel.textContent = "Logged out";
      showBanner("This browser is no longer logged in to the daemon.", "Run qwen-daemon url and open the address it prints.");
    }
  },
});

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
  if (!text.trim() || ui.prompt.disabled) return;
  setNote("");
  ui.send.disabled = true;
  try {
    await api("POST", `${base}/prompt`, { text });
    if (ui.prompt.value === text) ui.prompt.value = "";
    pinned = true;
  } catch (error) {
    if (error.code === "session_busy") {
      setNote("Not sent: the agent is still working on the last prompt. Wait for it to finish, or press Esc to cancel it. Your text is kept.", "warn");
    } else if (error.status === 0) {
      setNote("Not sent: the daemon cannot be reached. Your text is kept; send it again once connected.", "warn");
    } else {
      setNote(`Not sent: ${error.message}. Your text is kept.`, "error");
    }
  } finally {
    ui.send.disabled = ui.prompt.disabled;
  }
}

async function cancelTurn() {
  if (!BUSY.has(state)) return;
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

setState(ui.state.className.replace(/^.*state-/, "") || "starting");
stream.start();
