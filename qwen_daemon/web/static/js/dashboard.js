// The dashboard: every session with its state and last activity; create, open, delete.
//
// The list is refreshed every few seconds while the tab is visible (and at once when it becomes
// visible again). Recently used workspaces live in localStorage and are offered with the
// workspaces of the current sessions.

import { api, el, errorHint, relativeTime, replaceChildren, stateBadge } from "./util.js";

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("create-form"),
  cwd: $("cwd"),
  title: $("title"),
  create: $("create"),
  error: $("create-error"),
  datalist: $("recent-workspaces"),
  recent: $("recent"),
  chips: document.querySelector("#recent .chips"),
  status: $("list-status"),
  list: $("sessions"),
};
const RECENT_KEY = "qwen-daemon.recent-workspaces";
const REFRESH_MS = 5000;
const confirming = new Map(); // session id → timer: the first Delete click asks for a second

let sessions = [];

function recentWorkspaces() {
  try {
    const list = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]");
    return Array.isArray(list) ? list.filter((x) => typeof x === "string") : [];
  } catch {
    return [];
  }
}

function rememberWorkspace(cwd) {
  const list = [cwd, ...recentWorkspaces().filter((x) => x !== cwd)].slice(0, 8);
  localStorage.setItem(RECENT_KEY, JSON.stringify(list));
}

function renderRecent() {
  const seen = new Set();
  const all = [...recentWorkspaces(), ...sessions.map((s) => s.cwd)].filter((cwd) => !seen.has(cwd) && seen.add(cwd)).slice(0, 8);
  replaceChildren(ui.datalist, all.map((cwd) => el("option", { value: cwd })));
  replaceChildren(
    ui.chips,
    all.map((cwd) =>
      el("li", {}, el("button", {
        type: "button",
        class: "chip-btn",
        title: cwd,
        text: cwd.split("/").filter(Boolean).pop() || cwd,
        "aria-label": `Use workspace ${cwd}`,
        onclick: () => {
          ui.cwd.value = cwd;
          ui.cwd.focus();
        },
      })),
    ),
  );
  ui.recent.hidden = all.length === 0;
}

function row(session) {
  const href = `/s/${encodeURIComponent(session.id)}`;
  const asking = confirming.has(session.id);
  const remove = el("button", {
    type: "button",
    class: `btn ghost danger${asking ? " confirm" : ""}`,
    text: asking ? "Confirm delete" : "Delete",
    "aria-label": asking ? `Confirm: delete session ${session.title}` : `Delete session ${session.title}`,
    onclick: () => deleteSession(session),
  });
  return el(
    "li",
    { class: "session-row", dataset: { sessionId: session.id, state: session.state } },
    el(
      "div",
      { class: "row-head" },
      el("a", { class: "session-link", href }, el("span", { class: "session-title", text: session.title })),
      stateBadge(session.state),
    ),
    el("p", { class: "cwd", title: session.cwd, text: session.cwd }),
    el(
      "div",
      { class: "session-foot" },
      el("time", { class: "muted small", datetime: session.updated_at, title: session.updated_at, text: `active ${relativeTime(session.updated_at)}` }),
      el("span", { class: "row-actions" }, el("a", { class: "btn", href, text: "Open" }), remove),
    ),
  );
}

function render() {
  const sorted = [...sessions].sort((a, b) => String(b.updated_at).localeCompare(String(a.updated_at)));
  replaceChildren(ui.list, sorted.map(row));
  ui.status.textContent = sorted.length ? "" : "No sessions yet. Create one above.";
  ui.status.hidden = sorted.length > 0;
  renderRecent();
}

async function load() {
  try {
    const data = await api("GET", "/api/sessions");
    sessions = data.sessions || [];
    render();
  } catch (error) {
    if (error.status === 401) {
      location.reload(); // shows the login page
      return;
    }
    ui.status.hidden = false;
    ui.status.textContent = `Cannot load sessions: ${error.message}. Retrying…`;
  }
}

async function deleteSession(session) {
  if (!confirming.has(session.id)) {
    confirming.set(session.id, setTimeout(() => {
      confirming.delete(session.id);
      render();
    }, 4000));
    render();
    ui.list.querySelector(`[data-session-id="${CSS.escape(session.id)}"] .btn.danger`)?.focus();
    return;
  }
  clearTimeout(confirming.get(session.id));
  confirming.delete(session.id);
  try {
    await api("DELETE", `/api/sessions/${encodeURIComponent(session.id)}`);
  } catch (error) {
    if (error.status !== 404) {
      ui.status.hidden = false;
      ui.status.textContent = `Could not delete “${session.title}”: ${error.message}`;
    }
  }
  await load();
}

function showCreateError(message, hint, sessionId) {
  const parts = [el("p", { text: message })];
  if (hint) parts.push(el("p", { class: "hint", text: hint }));
  if (sessionId) parts.push(el("p", {}, el("a", { href: `/s/${encodeURIComponent(sessionId)}`, text: "Open the failed session" })));
  replaceChildren(ui.error, parts);
  ui.error.hidden = false;
}

ui.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const cwd = ui.cwd.value.trim();
  ui.error.hidden = true;
  if (!cwd) {
    showCreateError("Enter the absolute path of the folder the agent should work in.");
    ui.cwd.focus();
    return;
  }
  const body = { cwd };
  if (ui.title.value.trim()) body.title = ui.title.value.trim();
  ui.create.disabled = true;
  ui.create.textContent = "Starting the agent…";
  try {
    const session = await api("POST", "/api/sessions", body);
    rememberWorkspace(cwd);
    location.assign(`/s/${encodeURIComponent(session.id)}`);
  } catch (error) {
    if (error.code === "agent_error") {
      rememberWorkspace(cwd);
      showCreateError(`The agent could not start: ${error.message}`, errorHint(error.message), error.details?.session_id);
    } else {
      showCreateError(error.message);
    }
    ui.create.disabled = false;
    ui.create.textContent = "Create session";
    load();
  }
});

document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && load());
setInterval(() => document.visibilityState === "visible" && load(), REFRESH_MS);
load();
