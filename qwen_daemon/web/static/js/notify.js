// @ts-check
// "Notify me on this device": Web Push for this browser, on the dashboard and the session page.
//
// Why here and not only in the tab: a tab's own notifications stop when it is closed or the phone
// locks, and that is exactly when an agent waiting for an answer waits forever. With push the
// daemon sends a notification through the browser's push service (Google's for Chrome, Mozilla's
// for Firefox, Apple's for Safari) whenever a session needs an answer, finishes or fails — except
// to a device that has that session open in front of it (the page tells the daemon, over its
// WebSocket, when it is visible).
//
// The control shows one of: not available here (and why), blocked by the browser, off, on. On
// asks the browser for permission, subscribes with the daemon's VAPID key and hands the
// subscription to the daemon; off deletes it there and unsubscribes. The daemon's id for it is
// kept in localStorage with its endpoint, so "off" can delete the right one and a page can tell
// whether the daemon still has it (the daemon drops subscriptions whose push service says they
// are gone, and they can be deleted from another device).

import { ApiError, api, el, replaceChildren } from "./util.js";
import { registration } from "./worker.js";

const STORE_KEY = "qwen-daemon.push-subscription";
/** How long the browser's push service may take to subscribe: offline, Chromium waits forever. */
const SUBSCRIBE_WITHIN_MS = 20_000;

/**
 * @typedef {keyof typeof STATE_TEXT} State what the control shows
 * @typedef {{text: string, kind?: string}} Message a line under the control
 * @typedef {{state: State, why?: string, message?: Message}} Outcome where a switch left the control
 * @typedef {{id: string, endpoint: string}} Stored the daemon's id of this device's subscription
 */

/** @type {Record<"checking" | "unsupported" | "blocked" | "off" | "on" | "error", [string, string]>} */
const STATE_TEXT = {
  checking: ["Checking…", ""],
  unsupported: ["Not available here", ""],
  blocked: ["Blocked by the browser", "Allow notifications for this site in the browser's site settings, then reload this page."],
  off: ["Off", "This device gets no notifications when you are away."],
  on: [
    "On",
    "This device gets a notification when a session needs your answer, finishes or fails — unless it has that session open in front of it.",
  ],
  error: ["Unavailable", ""],
};

/** Why this browser cannot do Web Push here, in words; "" when it can. */
export function supportProblem() {
  if (!window.isSecureContext) {
    return "Notifications need a secure address: open the daemon over https (its public_url) or on localhost.";
  }
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    // navigator.standalone: iOS Safari's own flag (not in the DOM types), true when started from the Home Screen
    if (/iPhone|iPad|iPod/.test(navigator.userAgent) && !(/** @type {{standalone?: boolean}} */ (navigator).standalone)) {
      return "On iPhone and iPad, add this page to the Home Screen (Share, then Add to Home Screen) and open it from there.";
    }
    return "This browser does not support Web Push notifications.";
  }
  return "";
}

/** @returns {Stored | null} */
function stored() {
  try {
    const value = JSON.parse(localStorage.getItem(STORE_KEY) || "null");
    return value && typeof value.id === "string" && typeof value.endpoint === "string" ? value : null;
  } catch {
    return null;
  }
}

/** @param {Stored | null} value */
function store(value) {
  if (value) localStorage.setItem(STORE_KEY, JSON.stringify(value));
  else localStorage.removeItem(STORE_KEY);
}

/** @param {unknown} base64url */
function keyBytes(base64url) {
  const text = String(base64url).replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(text + "=".repeat((4 - (text.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

/**
 * @param {ArrayBuffer | null | undefined} buffer
 * @param {Uint8Array} bytes
 */
function sameBytes(buffer, bytes) {
  if (!buffer) return false;
  const other = new Uint8Array(buffer);
  return other.length === bytes.length && other.every((b, i) => b === bytes[i]);
}

/** Whether the daemon pushes to this device (then a page need not notify on its own). */
export async function pushActive() {
  if (supportProblem() || Notification.permission !== "granted") return false;
  const reg = await registration();
  if (!reg || !reg.pushManager) return false;
  // bounded: a browser that cannot reach its push service may leave this pending, and the tab's
  // own notification must not wait on it (seen in headless Chromium offline, about 1 run in 20)
  const sub = await Promise.race([
    reg.pushManager.getSubscription().catch(() => null),
    new Promise((resolve) => setTimeout(() => resolve(null), 2000)),
  ]);
  const known = stored();
  return Boolean(sub && known && known.endpoint === sub.endpoint);
}

/**
 * Show a notification from the page, through the service worker where there is one (Android
 * Chrome refuses `new Notification()`); a click opens or focuses `options.data.url`.
 * @param {string} title
 * @param {NotificationOptions} options
 */
export async function showNotification(title, options) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const reg = await registration();
  if (reg) {
    await reg.showNotification(title, { icon: "/static/icons/icon-192.png", badge: "/static/icons/badge-96.png", ...options });
    return;
  }
  const notification = new Notification(title, options);
  notification.onclick = () => {
    window.focus();
    notification.close();
  };
}

/**
 * Close the notifications about one session (its page is in front of the user now).
 * @param {string} sessionId
 */
export async function clearNotifications(sessionId) {
  const reg = await registration();
  if (!reg || !reg.getNotifications) return;
  for (const notification of await reg.getNotifications()) {
    if ((notification.data || {}).session_id === sessionId) notification.close();
  }
}

/**
 * An error from the daemon's push API, in words.
 * @param {any} error what was thrown
 * @param {string} doing
 */
function apiProblem(error, doing) {
  if (error instanceof ApiError) {
    if (error.status === 0) return `Could not ${doing}: the daemon cannot be reached.`;
    if (error.status === 404 && error.code === "not_found") return `Could not ${doing}: this daemon does not offer push notifications (update it).`;
    if (error.status === 401) return `Could not ${doing}: this browser is no longer logged in to the daemon.`;
    return `Could not ${doing}: ${String(error.message).replace(/\.$/, "")}.`;
  }
  return `Could not ${doing}: ${String(error && error.message ? error.message : error).replace(/\.$/, "")}.`;
}

export class NotifyControl {
  /**
   * @param {HTMLElement} button the header's bell button, which opens and closes the panel
   * @param {HTMLElement} panel the (hidden) panel element the control is built in
   */
  constructor(button, panel) {
    this.button = button;
    this.panel = panel;
    /** @type {State} */
    this.state = "checking";
    this.busy = false;
    this.switch = el("input", {
      type: "checkbox",
      role: "switch",
      id: "notify-switch",
      class: "notify-switch",
      onchange: () => this.toggle(),
    });
    this.stateText = el("strong", { class: "notify-state-label" });
    this.stateHint = el("span", { class: "notify-state-hint" });
    this.test = el("button", { type: "button", class: "btn small", id: "notify-test", text: "Send a test", onclick: () => this.sendTest() });
    this.message = el("p", { class: "notify-message", role: "status", id: "notify-message" });
    replaceChildren(
      panel,
      el(
        "div",
        { class: "notify-row" },
        el("label", { class: "notify-label", for: "notify-switch" }, this.switch, el("span", { text: "Notify me on this device" })),
        this.test,
      ),
      el("p", { class: "notify-state", id: "notify-state" }, this.stateText, " ", this.stateHint),
      this.message,
    );
    button.setAttribute("aria-controls", panel.id);
    button.setAttribute("aria-expanded", "false");
    button.hidden = false;
    button.addEventListener("click", () => this.open(panel.hidden));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !panel.hidden && panel.contains(document.activeElement)) {
        this.open(false);
        button.focus();
      }
    });
    this.show("checking");
    this.refresh();
  }

  /** @param {HTMLElement["hidden"]} yes whether to open (the click passes the panel's hidden flag) */
  open(yes) {
    this.panel.hidden = !yes;
    this.button.setAttribute("aria-expanded", String(yes));
    if (yes) this.refresh();
  }

  /**
   * Show a state (and optionally why); the switch and test button follow it.
   * @param {State} state
   * @param {string} [why]
   * @param {Message} [message]
   */
  show(state, why = "", message) {
    this.state = state;
    const [label, hint] = STATE_TEXT[state];
    this.stateText.textContent = `${label}.`;
    this.stateHint.textContent = why || hint;
    this.panel.dataset.state = state;
    this.button.dataset.state = state;
    const name = `Notifications for this device: ${label.toLowerCase()}`;
    this.button.title = name;
    this.button.setAttribute("aria-label", name);
    if (!this.busy) this.switch.checked = state === "on"; // while busy it shows what was asked
    this.switch.disabled = this.busy || state === "unsupported" || state === "blocked" || state === "checking";
    this.test.disabled = this.busy || state !== "on";
    if (message !== undefined) this.say(message.text || "", message.kind);
  }

  /**
   * @param {string} text
   * @param {string} [kind]
   */
  say(text, kind = "info") {
    this.message.textContent = text;
    this.message.className = `notify-message note-${kind}`;
  }

  /** Find out the real state: browser support, permission, subscription, the daemon's record. */
  async refresh() {
    if (this.busy) return;
    const problem = supportProblem();
    if (problem) return this.show("unsupported", problem);
    if (Notification.permission === "denied") return this.show("blocked");
    const reg = await registration();
    if (!reg) return this.show("unsupported", "The service worker that shows notifications could not start in this browser.");
    const sub = await reg.pushManager.getSubscription().catch(() => null);
    const known = stored();
    if (!sub || Notification.permission !== "granted" || !known || known.endpoint !== sub.endpoint) {
      return this.show("off");
    }
    let list;
    try {
      list = await api("GET", "/api/push/subscriptions");
    } catch (error) {
      return this.show("on", "", { text: apiProblem(error, "check this device's subscription with the daemon"), kind: "warn" });
    }
    if ((list.subscriptions || []).some((/** @type {{id: string}} */ s) => s.id === known.id)) return this.show("on");
    // the daemon dropped it (its push service said it is gone, or it was deleted elsewhere)
    store(null);
    await sub.unsubscribe().catch(() => false);
    return this.show("off", "", { text: "The daemon no longer had this device's subscription (it was removed). Turn it on again to get notifications.", kind: "warn" });
  }

  async toggle() {
    if (this.busy) return;
    const on = this.switch.checked;
    this.busy = true;
    this.show(this.state, on ? "Turning on…" : "Turning off…", { text: "" });
    /** @type {Outcome} */
    let result;
    try {
      result = on ? await this.enable() : await this.disable();
    } catch (error) {
      result = { state: on ? "off" : "on", message: { text: error.message, kind: "error" } };
    } finally {
      this.busy = false;
    }
    this.show(result.state, result.why || "", result.message || { text: "" });
  }

  /** @returns {Promise<Outcome>} */
  async enable() {
    const permission = await Notification.requestPermission();
    if (permission === "denied") return { state: "blocked" };
    if (permission !== "granted") {
      return { state: "off", message: { text: "Not turned on: the browser's question about notifications was not answered with Allow.", kind: "warn" } };
    }
    const reg = await registration();
    if (!reg) return { state: "unsupported", why: "The service worker that shows notifications could not start in this browser." };
    let key;
    try {
      key = keyBytes((await api("GET", "/api/push/key")).public_key);
    } catch (error) {
      throw new Error(apiProblem(error, "turn notifications on"));
    }
    let sub = await reg.pushManager.getSubscription();
    if (sub && !sameBytes(sub.options && sub.options.applicationServerKey, key)) {
      await sub.unsubscribe().catch(() => false); // made for another key: the daemon's changed
      sub = null;
    }
    if (!sub) {
      let timer;
      try {
        sub = await Promise.race([
          reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }),
          /** @type {Promise<never>} it only rejects */ (new Promise((_, reject) => {
            timer = setTimeout(() => {
              const error = new Error(`no answer within ${SUBSCRIBE_WITHIN_MS / 1000} s`);
              error.name = "TimeoutError";
              reject(error);
            }, SUBSCRIBE_WITHIN_MS);
          })),
        ]);
      } catch (error) {
        throw new Error(
          `Could not turn notifications on: the browser could not subscribe at its push service (${error.name}: ${error.message}). ` +
            "This device must be able to reach its browser's push service on the internet (for Chrome, Google's).",
        );
      } finally {
        clearTimeout(timer);
      }
    }
    let created;
    try {
      created = await api("POST", "/api/push/subscriptions", sub.toJSON());
    } catch (error) {
      await sub.unsubscribe().catch(() => false);
      throw new Error(apiProblem(error, "register this device with the daemon"));
    }
    store({ id: String(created.id), endpoint: sub.endpoint });
    return { state: "on", message: { text: "Notifications are on for this device. Send a test to check they arrive.", kind: "ok" } };
  }

  /** @returns {Promise<Outcome>} */
  async disable() {
    const known = stored();
    if (known) {
      try {
        await api("DELETE", `/api/push/subscriptions/${encodeURIComponent(known.id)}`);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) throw new Error(apiProblem(error, "turn notifications off"));
      }
    }
    store(null);
    const reg = await registration();
    const sub = reg && (await reg.pushManager.getSubscription().catch(() => null));
    if (sub) await sub.unsubscribe().catch(() => false);
    return { state: "off", message: { text: "Notifications are off for this device.", kind: "info" } };
  }

  async sendTest() {
    if (this.state !== "on" || this.busy) return;
    this.test.disabled = true;
    this.say("Sending a test…");
    try {
      const reply = await api("POST", "/api/push/test");
      const sent = reply && typeof reply.sent === "number" ? reply.sent : 0;
      if (sent > 0) this.say("Test sent: a notification should appear on this device within a few seconds.", "ok");
      else this.say("Nothing was sent: the daemon has no subscription for this device. Turn notifications off and on again.", "warn");
    } catch (error) {
      this.say(apiProblem(error, "send a test"), "error");
    } finally {
      this.test.disabled = this.state !== "on";
    }
  }
}

/** Mount the control on a page that has `#notify` (the bell) and `#notify-panel`. */
export function mountNotify() {
  const button = document.getElementById("notify");
  const panel = document.getElementById("notify-panel");
  return button && panel ? new NotifyControl(button, panel) : null;
}
