// @ts-check
// Small shared helpers: DOM building without innerHTML, and the API client.
//
// Why no innerHTML here: the page runs under Trusted Types, so the only way to put markup into
// the DOM is DOMPurify (markdown.js). Everything else is built from elements and text nodes,
// which cannot execute anything whatever the agent sends.

import { SESSION_STATE, SESSION_STATES } from "./protocol.js";

/** @typedef {Node | string | number | boolean | null | undefined | Child[]} Child what el() appends */
/** @typedef {Record<string, any>} Attrs attributes, `class`, `text`, `dataset` and `on*` listeners */

/**
 * Create an element: el("div", {class: "x", onclick: fn, "aria-label": "y"}, child, "text").
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

/**
 * @param {Element} node
 * @param {Child[]} children
 */
function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

/**
 * Replace all children of a node.
 * @param {Element} node
 * @param {...Child} children
 */
export function replaceChildren(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

/** An API failure with the daemon's error code (or "network" when it could not be reached). */
export class ApiError extends Error {
  /**
   * @param {number} status the HTTP status (0: no answer)
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
    /** @type {Record<string, any> | undefined} the daemon's whole error object, when it sent one */
    this.details = undefined;
  }
}

/**
 * Call the daemon's JSON API with the login cookie. State-changing calls carry the same-origin
 * proof header the daemon requires for cookie auth.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body] sent as JSON
 * @returns {Promise<any>} the decoded answer (null when it had no body)
 */
export async function api(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json" };
  /** @type {RequestInit} */
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (method !== "GET" && method !== "HEAD") headers["X-Qwen-Daemon"] = "1";
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "the daemon cannot be reached");
  }
  const text = await response.text().catch(() => "");
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const err = (data && data.error) || {};
    const failure = new ApiError(response.status, err.code || "http_" + response.status, err.message || response.statusText);
    failure.details = err;
    throw failure;
  }
  return data;
}

/**
 * "just now", "5 min ago", "3 h ago", or a date, for an ISO timestamp.
 * @param {string} iso
 * @param {number} [now] milliseconds since the epoch
 */
export function relativeTime(iso, now = Date.now()) {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return "";
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  return new Date(then).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

/**
 * What a state badge says: the state's own name, but for the one that waits for the user.
 * @type {Readonly<Record<string, string>>}
 */
export const STATE_LABELS = Object.freeze(
  Object.fromEntries(SESSION_STATES.map((s) => [s, s === SESSION_STATE.AWAITING_PERMISSION ? "needs you" : s])),
);

/**
 * A state badge element.
 * @param {string} state
 */
export function stateBadge(state) {
  return el("span", { class: `badge state-${state}`, text: STATE_LABELS[state] || state });
}

/**
 * What to do about an error message from the agent or the daemon, in plain words.
 * @param {unknown} message
 */
export function errorHint(message) {
  const text = String(message || "");
  if (/auth|credential|api[ _-]?key|unauthori[sz]ed|\b401\b/i.test(text)) {
    // the daemon's own message already says where credentials go: then only what to do next
    const where = /settings\.json/i.test(text)
      ? ""
      : "The agent has no working credentials: set security.auth (selectedType, apiKey, baseUrl) in ~/.qwen/settings.json. ";
    return (
      `${where}Once ~/.qwen/settings.json has them, no restart is needed: press Reopen on the session's page ` +
      "(or run qwen-daemon reopen ID) if it failed, then prompt again. OPENAI_API_KEY, OPENAI_BASE_URL and " +
      "OPENAI_MODEL are read only when the daemon starts: after setting them, restart it (qwen-daemon stop, then start)."
    );
  }
  if (/keeps crashing/i.test(text)) {
    return "The daemon stopped restarting an agent that kept crashing. Once the cause is fixed, reopen the session (the Reopen button on its page, or qwen-daemon reopen).";
  }
  if (/could not restore the agent's conversation/i.test(text)) {
    return "The agent lost its copy of the earlier conversation; the history stays here, but the agent starts afresh.";
  }
  if (/not found|no such file|ENOENT|could not find/i.test(text) && /agent|qwen|command/i.test(text)) {
    return "The agent program was not found. Run make install, or set agent_cmd, then restart the daemon.";
  }
  if (/exit|died|crash|terminated|signal|connection/i.test(text)) {
    return "The agent process stopped. Your next prompt starts a fresh agent session.";
  }
  return "Try again; if it keeps happening, look at the agent log in the daemon's state directory.";
}
