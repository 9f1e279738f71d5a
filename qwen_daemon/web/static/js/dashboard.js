// @ts-check
// The dashboard: every session with its state and last activity; create, open, rename, archive,
// delete. Archived sessions are listed apart, in a section that starts collapsed — except those
// running or waiting for an answer, which stay in the main list (marked archived).
//
// The lists are refreshed every few seconds while the tab is visible (and at once when it becomes
// visible again); while the daemon cannot be reached a banner says so and the states are shown as
// unknown, since nobody knows them. Recently used workspaces live in localStorage and are offered with the
// workspaces of the current sessions. The named agents come from /api/agents with the same
// refresh: an agent's modes are known only once it has run a session, so the mode choice appears
// when they are. Choosing a workspace starts its agent in the background (a warm spare), so
// Create finds it running instead of waiting a second or more for the agent to boot.

import { AwayBanner } from "./away.js";
import { mountNotify } from "./notify.js";
import { BUSY_STATES } from "./protocol.js";
import { editTitle } from "./rename.js";
import { api, el, errorHint, relativeTime, replaceChildren, stateBadge } from "./util.js";

/** @typedef {import("./protocol.js").SessionSummary} SessionSummary */
/** @typedef {{id: string, name?: string, description?: string}} Mode */
/**
 * @typedef {{name: string, default?: boolean, modes?: Mode[] | null}} Agent
 * @typedef {{agents: Agent[], default_agent: string, spare_agents?: number}} Agents GET /api/agents
 */

/** The template's element with this id (dashboard.html has every one asked for here). */
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const ui = {
  form: $("create-form"),
  cwd: /** @type {HTMLInputElement} */ ($("cwd")),
  title: /** @type {HTMLInputElement} */ ($("title")),
  agentField: $("agent-field"),
  agent: /** @type {HTMLSelectElement} */ ($("agent")),
  modeField: $("mode-field"),
  mode: /** @type {HTMLSelectElement} */ ($("mode")),
  create: /** @type {HTMLButtonElement} */ ($("create")),
  error: $("create-error"),
  warm: $("warm-status"),
  datalist: $("recent-workspaces"),
  recent: $("recent"),
  chips: /** @type {HTMLElement} */ (document.querySelector("#recent .chips")),
  status: $("list-status"),
  note: $("list-note"),
  lists: $("lists"),
  list: $("sessions"),
  archived: $("archived-section"),
  archivedCount: $("archived-count"),
  archivedList: $("archived"),
  away: $("away"),
};
const RECENT_KEY = "qwen-daemon.recent-workspaces";
const REFRESH_MS = 5000;
const BUSY = new Set(BUSY_STATES);
/** Archived but working or asking: listed with the sessions in use (marked archived), never
 * hidden in the collapsed section, so whoever comes back (from a phone) sees what needs them. */
const inSight = (/** @type {SessionSummary} */ session) => BUSY.has(session.state);
const confirming = new Map(); // session id → timer: the first Delete click asks for a second

/** @type {SessionSummary[]} */
let sessions = [];
/** @type {Agents | null} */
let agents = null; // the last GET /api/agents answer
let agentsSeen = ""; // its text: the choices are rebuilt only when it changed

/** @returns {string[]} */
function recentWorkspaces() {
  try {
    const list = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]");
    return Array.isArray(list) ? list.filter((x) => typeof x === "string") : [];
  } catch {
    return [];
  }
}

/** @param {string} cwd */
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
          warmChosen();
        },
      })),
    ),
  );
  ui.recent.hidden = all.length === 0;
}

// --- agent and mode choice ---------------------------------------------------------------------

/**
 * @param {string} value
 * @param {string} text
 * @param {string} [title]
 */
function option(value, text, title) {
  return el("option", { value, text, title: title || undefined });
}

function renderAgents() {
  if (!agents) return;
  const list = agents.agents;
  const chosen = ui.agent.value || agents.default_agent;
  replaceChildren(ui.agent, list.map((a) => option(a.name, a.default ? `${a.name} (default)` : a.name)));
  ui.agent.value = list.some((a) => a.name === chosen) ? chosen : agents.default_agent;
  ui.agentField.hidden = list.length === 0;
  renderModes();
}

/** The chosen agent's modes, when it has advertised them; none known hides the choice. */
function renderModes() {
  const agent = agents?.agents.find((a) => a.name === ui.agent.value);
  const modes = (agent?.modes || []).filter((m) => m && typeof m.id === "string");
  const chosen = ui.mode.value;
  replaceChildren(
    ui.mode,
    option("", "agent’s default"),
    modes.map((m) => option(m.id, m.name || m.id, m.description)),
  );
  ui.mode.value = modes.some((m) => m.id === chosen) ? chosen : "";
  ui.modeField.hidden = modes.length === 0;
}

async function loadAgents() {
  /** @type {Agents | undefined} */
  let data;
  try {
    data = await api("GET", "/api/agents");
  } catch {
    return; // the session list reports an unreachable daemon; without agents the default one is used
  }
  if (!Array.isArray(data?.agents)) return;
  // running agents and spares come and go; rebuild the choices (closing an open list) only for news
  const seen = JSON.stringify([data.default_agent, data.agents.map((a) => [a.name, a.default, a.modes])]);
  if (seen === agentsSeen) return;
  agentsSeen = seen;
  agents = data;
  renderAgents();
}

ui.agent.addEventListener("change", () => {
  renderModes();
  warmChosen();
});

// --- warming the chosen agent -------------------------------------------------------------------

let warming = ""; // "agent\0workspace" last asked for: each choice is sent once

function chosenAgent() {
  return (!ui.agentField.hidden && ui.agent.value) || agents?.default_agent || "";
}

function choiceKey() {
  return `${chosenAgent()}\0${ui.cwd.value.trim()}`;
}

/** Ask the daemon to start the chosen agent in the chosen workspace now, where it keeps spares
 * (spare_agents > 0). Errors (a wrong path, an agent that cannot start) are left for Create,
 * which explains them. */
async function warmChosen() {
  const cwd = ui.cwd.value.trim();
  const agent = chosenAgent();
  const key = choiceKey();
  if (!agents?.spare_agents || !agent || !cwd.startsWith("/") || key === warming) return;
  warming = key;
  ui.warm.textContent = `Starting ${agent} in this folder…`;
  ui.warm.hidden = false;
  let reply = null;
  try {
    reply = await api("POST", `/api/agents/${encodeURIComponent(agent)}/warm`, { cwd });
  } catch {
    reply = null;
  }
  if (warming !== key) return; // a newer choice owns the status
  if (!reply) warming = ""; // refused or failed: worth asking again after the next change
  if (choiceKey() !== key) return; // the field was edited meanwhile (which hid the status)
  ui.warm.hidden = !reply?.pid;
  ui.warm.textContent = `${agent} is ready: a session here starts at once.`;
}

ui.cwd.addEventListener("change", warmChosen);
ui.cwd.addEventListener("input", () => {
  if (choiceKey() !== warming) ui.warm.hidden = true; // what it says is about another folder
});

// --- the session lists ---------------------------------------------------------------------------

/** @type {SessionSummary[]} */
let archived = [];
let away = false; // the last load could not reach the daemon: states shown are not current
/** @type {string | null} */
let editing = null; // the session id whose title is being edited: lists wait until it is done
let nextLoad = 0; // when the next refresh is due (ms epoch)

const awayBanner = new AwayBanner(ui.away, {
  retryNow: () => load(),
  hint: "What is listed is how things stood when it was last reached.",
});

/**
 * @param {string} text
 * @param {string} [kind]
 */
function note(text, kind = "info") {
  ui.note.textContent = text;
  ui.note.className = `list-note note-${kind}`;
  ui.note.hidden = !text;
}

/**
 * @param {SessionSummary} session
 * @param {{title?: string, archived?: boolean}} body
 */
function patch(session, body) {
  return api("PATCH", `/api/sessions/${encodeURIComponent(session.id)}`, body);
}

/**
 * @param {SessionSummary} session
 * @param {HTMLElement} link
 */
function rename(session, link) {
  editing = session.id;
  editTitle(link, {
    current: session.title,
    label: `New title for session ${session.title}`,
    save: async (title) => {
      const updated = await patch(session, { title });
      session.title = updated?.title ?? title;
    },
    done: () => {
      editing = null;
      render();
      /** @type {HTMLElement | null} */ (ui.lists.querySelector(`[data-session-id="${CSS.escape(session.id)}"] .rename-btn`))?.focus();
    },
  });
}

/**
 * @param {SessionSummary} session
 * @param {boolean} value
 */
async function setArchived(session, value) {
  note("");
  try {
    await patch(session, { archived: value });
    note(value ? `“${session.title}” archived: it is listed under Archived below.` : `“${session.title}” is back in the list.`);
  } catch (error) {
    note(`Could not ${value ? "archive" : "unarchive"} “${session.title}”: ${error.message}`, "error");
  }
  await load();
}

/**
 * @param {SessionSummary} session
 * @param {boolean} isArchived
 */
function row(session, isArchived) {
  const href = `/s/${encodeURIComponent(session.id)}`;
  const asking = confirming.has(session.id);
  const state = away ? "unknown" : session.state;
  const link = el("a", { class: "session-link", href }, el("span", { class: "session-title", text: session.title }));
  /** @type {(text: string, label: string, onclick: () => void, extra?: string) => HTMLButtonElement} */
  const button = (text, label, onclick, extra = "") =>
    el("button", { type: "button", class: `btn ghost ${extra}`, text, "aria-label": label, onclick });
  const remove = button(
    asking ? "Confirm delete" : "Delete",
    asking ? `Confirm: delete session ${session.title}` : `Delete session ${session.title}`,
    () => deleteSession(session),
    `danger${asking ? " confirm" : ""}`,
  );
  const badge = stateBadge(state);
  if (away) badge.title = `Not known while the daemon cannot be reached (last known: ${session.state})`;
  return el(
    "li",
    { class: "session-row", dataset: { sessionId: session.id, state } },
    el("div", { class: "row-head" }, link, badge),
    el("p", { class: "cwd", title: session.cwd, text: session.cwd }),
    el(
      "div",
      { class: "session-foot" },
      el(
        "span",
        { class: "row-meta" },
        isArchived && inSight(session) && el("span", { class: "chip archived-chip", title: "Archived, but it needs you", text: "archived" }),
        session.agent && el("span", { class: "chip agent-chip", title: "Agent", text: session.agent }),
        session.mode && el("span", { class: "chip mode-chip", title: "Mode", text: session.mode }),
        el("time", { class: "muted small", datetime: session.updated_at, title: session.updated_at, text: `active ${relativeTime(session.updated_at)}` }),
      ),
      el(
        "span",
        { class: "row-actions" },
        el("a", { class: "btn", href, text: "Open" }),
        button("Rename", `Rename session ${session.title}`, () => rename(session, link), "rename-btn"),
        isArchived
          ? button("Unarchive", `Unarchive session ${session.title}`, () => setArchived(session, false))
          : button("Archive", `Archive session ${session.title}`, () => setArchived(session, true)),
        remove,
      ),
    ),
  );
}

const newestFirst = (/** @type {SessionSummary[]} */ list) => [...list].sort((a, b) => String(b.updated_at).localeCompare(String(a.updated_at)));

function render() {
  if (editing) return; // rebuilding the rows would take the text box away; done() renders
  const resting = archived.filter((s) => !inSight(s));
  const sorted = newestFirst([...sessions, ...archived.filter(inSight)]);
  replaceChildren(ui.list, sorted.map((s) => row(s, s.archived === true)));
  replaceChildren(ui.archivedList, newestFirst(resting).map((s) => row(s, true)));
  ui.archivedCount.textContent = `(${resting.length})`;
  ui.archived.hidden = resting.length === 0;
  if (away) {
    ui.status.textContent = "The sessions show once the daemon answers.";
  } else {
    ui.status.textContent = resting.length ? "No sessions in use. Create one above, or look under Archived." : "No sessions yet. Create one above.";
  }
  ui.status.hidden = sorted.length > 0;
  document.body.dataset.conn = away ? "away" : "ok";
  renderRecent();
}

/** @param {boolean} value */
function setAway(value) {
  if (value) awayBanner.show(nextLoad);
  else awayBanner.hide();
  if (value !== away) {
    away = value;
    render();
  }
}

/** @type {Promise<void> | null} */
let loading = null;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let timer = undefined;

/** Refresh both lists (and the agents); one at a time, and the next one is scheduled after it. */
function load() {
  clearTimeout(timer);
  loading ??= refresh().finally(() => {
    loading = null;
    nextLoad = Date.now() + REFRESH_MS;
    timer = setTimeout(() => (document.visibilityState === "visible" ? load() : null), REFRESH_MS);
    if (away) awayBanner.show(nextLoad);
  });
  return loading;
}

async function refresh() {
  loadAgents();
  try {
    const [open, old] = await Promise.all([api("GET", "/api/sessions"), api("GET", "/api/sessions?archived=true")]);
    sessions = open.sessions || [];
    archived = old.sessions || [];
    away = false; // rendered below
    awayBanner.hide();
    render();
  } catch (error) {
    if (error.status === 401) {
      location.reload(); // shows the login page
      return;
    }
    if (error.status === 0) {
      setAway(true);
      return;
    }
    setAway(false);
    ui.status.hidden = false;
    ui.status.textContent = `Cannot load sessions: ${error.message}. Retrying…`;
  }
}

/** @param {SessionSummary} session */
async function deleteSession(session) {
  if (!confirming.has(session.id)) {
    confirming.set(session.id, setTimeout(() => {
      confirming.delete(session.id);
      render();
    }, 4000));
    render();
    /** @type {HTMLElement | null} */ (ui.lists.querySelector(`[data-session-id="${CSS.escape(session.id)}"] .btn.danger`))?.focus();
    return;
  }
  clearTimeout(confirming.get(session.id));
  confirming.delete(session.id);
  try {
    await api("DELETE", `/api/sessions/${encodeURIComponent(session.id)}`);
  } catch (error) {
    if (error.status !== 404) note(`Could not delete “${session.title}”: ${error.message}`, "error");
  }
  await load();
}

/**
 * @param {string} message
 * @param {string} [hint]
 * @param {string} [sessionId] the session made for it, when the agent failed to start in it
 */
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
  /** @type {{cwd: string, title?: string, agent?: string, mode?: string}} */
  const body = { cwd };
  if (ui.title.value.trim()) body.title = ui.title.value.trim();
  if (!ui.agentField.hidden && ui.agent.value) body.agent = ui.agent.value;
  if (!ui.modeField.hidden && ui.mode.value) body.mode = ui.mode.value;
  ui.create.disabled = true;
  ui.warm.hidden = true;
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
window.addEventListener("online", () => load());
load();
mountNotify(); // "Notify me on this device": the bell in the header
