// @ts-check
// qwen-daemon's service worker: shows the daemon's Web Push notifications and acts on them.
//
// Why a worker: a notification must reach a user whose tab is closed or whose phone is locked,
// and Android Chrome shows notifications only from a service worker. It caches nothing and has
// no fetch handler, so every page and API call still goes to the daemon (no stale app, ever).
//
// A push's payload (decrypted JSON, from the daemon): {title, body, url: "/s/<id>", tag, kind:
// "permission"|"turn_ended"|"session_failed"|"test", session_id, request_id, actions: [{action:
// <option id>, title: "Allow once"|"Deny"}]}. `actions` is non-empty only for a permission request
// the notification can answer; clicking one POSTs that answer with the login cookie and the
// same-origin proof header, like the pages do. "Always" is never offered from a notification,
// whatever the payload says: a standing grant deserves the full page.
//
// A click on the notification itself focuses a window already showing its session, or opens one.
//
// Types: tsconfig.sw.json checks this file in the worker's scope (types/service-worker.d.ts).

/**
 * @typedef {{action: string, title: string}} Action an answer a notification offers
 * @typedef {Record<string, any>} Payload a push's decrypted JSON, as the daemon sent it (see above)
 * @typedef {object} Data what a notification carries to its click
 * @property {string} url
 * @property {string} kind
 * @property {string | null} session_id
 * @property {string | null} request_id
 * @property {string} title
 * @property {Action[]} actions
 */

"use strict";

const ICON = "/static/icons/icon-192.png";
const BADGE = "/static/icons/badge-96.png";
const ALWAYS = /always/i;

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

// --- push → notification -------------------------------------------------------------------------

/**
 * The payload as an object, whatever arrived (a push without a readable body still says something).
 * @param {PushMessageData | null} data
 * @returns {Payload}
 */
function readPayload(data) {
  if (!data) return {};
  try {
    const payload = data.json();
    return payload && typeof payload === "object" ? payload : {};
  } catch {
    try {
      return { body: data.text() };
    } catch {
      return {};
    }
  }
}

/**
 * A same-origin path for the payload's url ("/" for anything else).
 * @param {unknown} url
 */
function localUrl(url) {
  try {
    const parsed = new URL(String(url || "/"), self.location.origin);
    if (parsed.origin === self.location.origin) return parsed.pathname + parsed.search + parsed.hash;
  } catch {
    // not a URL: the dashboard
  }
  return "/";
}

/**
 * The answers a notification may offer: named options, never an "always" one, at most two.
 * @param {Payload} payload
 * @returns {Action[]}
 */
function answerActions(payload) {
  if (payload.kind !== "permission" || !payload.request_id || !payload.session_id) return [];
  const list = Array.isArray(payload.actions) ? payload.actions : [];
  return list
    .filter((a) => a && typeof a.action === "string" && a.action && typeof a.title === "string")
    .filter((a) => !ALWAYS.test(a.action) && !ALWAYS.test(a.title))
    .slice(0, 2)
    .map((a) => ({ action: a.action, title: a.title }));
}

/** @param {Payload} payload */
function notify(payload) {
  const actions = answerActions(payload);
  /** @type {Data} */
  const data = {
    url: localUrl(payload.url),
    kind: String(payload.kind || ""),
    session_id: payload.session_id ? String(payload.session_id) : null,
    request_id: payload.request_id ? String(payload.request_id) : null,
    title: String(payload.title || "qwen-daemon"),
    actions,
  };
  /** @type {NotificationOptions & {actions: Action[], renotify?: boolean, timestamp: number}} */
  const options = {
    body: String(payload.body || ""),
    data,
    icon: ICON,
    badge: BADGE,
    actions,
    requireInteraction: data.kind === "permission",
    timestamp: Date.now(),
  };
  if (payload.tag) {
    options.tag = String(payload.tag);
    options.renotify = true; // a newer event for the same thing should be noticed again
  }
  return self.registration.showNotification(data.title, options);
}

self.addEventListener("push", (event) => {
  event.waitUntil(notify(readPayload(event.data)));
});

// --- clicks ---------------------------------------------------------------------------------------

/**
 * Focus a window already at `url` (or else navigate one of ours there), or open a new one.
 * @param {string} url
 */
async function openPage(url) {
  const target = new URL(url, self.location.origin).href;
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const same = windows.find((client) => client.url === target || client.url.split("#")[0] === target);
  if (same) return same.focus();
  return self.clients.openWindow(target);
}

/**
 * Tell the user what happened to an answer, in a notification that opens the session.
 * @param {Data} data
 * @param {string} title
 * @param {string} body
 */
function followUp(data, title, body) {
  return self.registration.showNotification(title, {
    body,
    tag: data.request_id ? `answer-${data.request_id}` : undefined,
    icon: ICON,
    badge: BADGE,
    data: { url: data.url, kind: "answer", session_id: data.session_id, request_id: null, actions: [] },
  });
}

/**
 * POST the chosen option; say what happened when it did not work, and then open the session.
 * @param {Data & {session_id: string, request_id: string}} data
 * @param {string} optionId
 */
async function answer(data, optionId) {
  const url =
    `/api/sessions/${encodeURIComponent(data.session_id)}` +
    `/permissions/${encodeURIComponent(data.request_id)}`;
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-Qwen-Daemon": "1" },
      body: JSON.stringify({ option_id: optionId }),
    });
  } catch {
    await followUp(data, "Not answered: the daemon cannot be reached", `${data.title}. Open the session to answer there.`);
    return openPage(data.url);
  }
  if (response.ok) return undefined;
  let message = "";
  try {
    message = ((await response.json()).error || {}).message || "";
  } catch {
    message = "";
  }
  if (response.status === 404 || response.status === 409) {
    await followUp(data, "That request was already answered or has expired", data.title);
  } else if (response.status === 401) {
    await followUp(
      data,
      "Not answered: this device is no longer logged in",
      "Log in to the daemon again (qwen-daemon url, or pair this device), then answer on the session's page.",
    );
  } else {
    await followUp(data, "Not answered", message || `The daemon answered ${response.status}.`);
  }
  return openPage(data.url);
}

self.addEventListener("notificationclick", (event) => {
  const notification = event.notification;
  /** @type {Data} what notify() put there (the pages' own notifications carry less) */
  const data = notification.data || {};
  notification.close();
  const chosen = (data.actions || []).find((a) => a.action === event.action);
  if (event.action && chosen && data.session_id && data.request_id && !ALWAYS.test(event.action)) {
    event.waitUntil(answer(/** @type {Data & {session_id: string, request_id: string}} (checked above) */ (data), chosen.action));
  } else {
    // the body (or an action we do not know: never guess an answer) opens the session
    event.waitUntil(openPage(data.url || "/"));
  }
});
