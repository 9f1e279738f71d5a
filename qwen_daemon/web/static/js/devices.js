// @ts-check
// Devices: "Add a device" (a pairing QR code to scan with a phone) on the dashboard and the Devices
// page, and on the Devices page the list of logged-in browsers, to rename or log out.
//
// The QR code arrives as SVG markup from the daemon (segno made it). The page runs under Trusted
// Types, so markup enters the DOM only through DOMPurify: here with its SVG profile, returned as
// a fragment, never assigned as HTML. Logging out this very browser ends with a banner saying so
// (every later call would be refused), not with a sudden login page.

import DOMPurify from "../vendor/purify.mjs";
import { editTitle } from "./rename.js";
import { api, el, relativeTime, replaceChildren } from "./util.js";

/** @typedef {{id: string, name: string, current: boolean, created_at: string, last_seen_at: string}} Device */

const $ = (/** @type {string} */ id) => document.getElementById(id);
const REFRESH_MS = 10000;

// --- pairing ----------------------------------------------------------------------------------

// both pages that load this module have the button and the panel
const pairing = {
  button: /** @type {HTMLButtonElement} */ ($("add-device")),
  panel: /** @type {HTMLElement} */ ($("pair-panel")),
  /** @type {ReturnType<typeof setInterval> | undefined} */
  timer: undefined,
  expiresAt: 0,
};

/**
 * Whether a pairing URL names this machine only (a phone cannot open 127.0.0.1 or localhost).
 * @param {string} url
 */
function localOnly(url) {
  const host = new URL(url).hostname;
  return host === "localhost" || host === "[::1]" || host.startsWith("127.");
}

/** @param {string} markup */
function svgFragment(markup) {
  return DOMPurify.sanitize(markup, { USE_PROFILES: { svg: true }, RETURN_DOM_FRAGMENT: true });
}

function closePairing() {
  clearInterval(pairing.timer);
  pairing.timer = undefined;
  pairing.panel.hidden = true;
  replaceChildren(pairing.panel);
  pairing.button.setAttribute("aria-expanded", "false");
}

/**
 * @param {HTMLElement} countdown
 * @param {HTMLElement} qr
 */
function tick(countdown, qr) {
  const left = Math.max(0, Math.round((pairing.expiresAt - Date.now()) / 1000));
  if (left > 0) {
    countdown.textContent = `Expires in ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    return;
  }
  clearInterval(pairing.timer);
  pairing.timer = undefined;
  countdown.textContent = "This code has expired. Press “New code” for another.";
  qr.classList.add("expired");
}

async function showPairing() {
  clearInterval(pairing.timer);
  const opening = pairing.panel.hidden;
  pairing.panel.hidden = false;
  pairing.button.setAttribute("aria-expanded", "true");
  if (opening) window.scrollTo({ top: 0 }); // the panel heads the page: pressed from further down, show it
  replaceChildren(pairing.panel, el("p", { class: "muted", role: "status", text: "Making a pairing code…" }));
  let code;
  try {
    code = await api("POST", "/api/pairing");
  } catch (error) {
    if (error.status === 401) return loggedOut();
    replaceChildren(
      pairing.panel,
      el("p", { class: "form-error", role: "alert", text: `No pairing code: ${error.message}` }),
      el("button", { type: "button", class: "btn", text: "Close", onclick: closePairing }),
    );
    return;
  }
  pairing.expiresAt = Date.parse(code.expires_at);
  const qr = el("div", { class: "pair-qr", role: "img", "aria-label": "QR code of the pairing address" });
  qr.append(svgFragment(code.svg));
  const countdown = el("p", { class: "pair-countdown", role: "timer", "aria-live": "off" });
  replaceChildren(
    pairing.panel,
    el("h2", { text: "Add a device" }),
    el(
      "div",
      { class: "pair-body" },
      qr,
      el(
        "div",
        { class: "pair-text" },
        el("p", { text: "Scan this code with the phone's camera, or open this address on the device, within two minutes. It works once and logs that browser in as a new device." }),
        el("p", {}, el("code", { class: "pair-url", text: code.url })),
        localOnly(code.url)
          ? el("p", {
              class: "muted pair-local",
              text: "This address works only on this computer. For a phone, set public_url to the address it reaches the daemon at (a tunnel or reverse proxy, or this machine's LAN address with --allow-remote): see “From your phone” in the README.",
            })
          : null,
        countdown,
        el(
          "div",
          { class: "row-actions pair-actions" },
          el("button", { type: "button", class: "btn", text: "New code", onclick: showPairing }),
          el("button", { type: "button", class: "btn ghost", text: "Close", onclick: closePairing }),
        ),
      ),
    ),
  );
  tick(countdown, qr);
  pairing.timer = setInterval(() => tick(countdown, qr), 1000);
}

pairing.button?.setAttribute("aria-controls", "pair-panel");
pairing.button?.setAttribute("aria-expanded", "false");
pairing.button?.addEventListener("click", () => (pairing.panel.hidden ? showPairing() : closePairing()));

// --- the Devices page ---------------------------------------------------------------------------

const ui = { list: $("devices"), status: $("devices-status"), banner: $("devices-banner") };
/** @type {Device[]} */
let devices = [];
/** @type {string | null} the id of the device being renamed */
let editing = null;
/** @type {HTMLInputElement | null} */
let nameBox = null; // the open name box of the device being renamed
let ended = false;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let timer = undefined;
const confirming = new Map(); // device id → timer: the first "Log out" click asks for a second

function loggedOut() {
  ended = true;
  clearTimeout(timer);
  if (pairing.panel) closePairing();
  if (pairing.button) pairing.button.disabled = true;
  const banner = ui.banner;
  if (!banner) {
    location.reload(); // the dashboard: the login page says what to do
    return;
  }
  replaceChildren(
    banner,
    el("p", { text: "This browser is logged out: it is no longer a device of this daemon." }),
    el("p", { class: "hint" }, "To log in again, scan a new pairing code from a logged-in browser, or on the daemon's machine run ", el("code", { text: "qwen-daemon url" }), " and open the address it prints."),
  );
  banner.hidden = false;
  if (ui.list) replaceChildren(ui.list);
  if (ui.status) ui.status.hidden = true;
}

/** @param {string} text */
function note(text) {
  if (!ui.status) return;
  ui.status.textContent = text;
  ui.status.hidden = !text;
}

/** @param {Device} device */
function row(device) {
  const name = el("span", { class: "session-title device-name", text: device.name });
  const asking = confirming.has(device.id);
  const label = device.current ? "Log out this browser" : `Log out ${device.name}`;
  return el(
    "li",
    { class: "session-row device-row", dataset: { deviceId: device.id, current: device.current ? "true" : "false" } },
    el("div", { class: "row-head" }, name, device.current && el("span", { class: "chip current-chip", text: "this browser" })),
    el(
      "div",
      { class: "session-foot" },
      el(
        "span",
        { class: "row-meta muted small" },
        el("time", { datetime: device.last_seen_at, title: device.last_seen_at, text: `seen ${relativeTime(device.last_seen_at)}` }),
        el("span", { text: "·" }),
        el("time", { datetime: device.created_at, title: device.created_at, text: `added ${relativeTime(device.created_at)}` }),
      ),
      el(
        "span",
        { class: "row-actions" },
        el("button", { type: "button", class: "btn ghost rename-btn", text: "Rename", "aria-label": `Rename ${device.name}`, onclick: (/** @type {MouseEvent} */ event) => rename(device, name, /** @type {HTMLButtonElement} */ (event.currentTarget)) }),
        el("button", {
          type: "button",
          class: `btn ghost danger revoke-btn${asking ? " confirm" : ""}`,
          text: asking ? "Confirm log out" : "Log out",
          "aria-label": asking ? `Confirm: ${label.toLowerCase()}` : label,
          onclick: () => revoke(device),
        }),
      ),
    ),
  );
}

function render() {
  if (editing || ended) return;
  // this browser first: the one a user looks for, and the one whose log-out ends this page
  // ui.list: render() runs on the Devices page only
  replaceChildren(/** @type {HTMLElement} */ (ui.list), [...devices].sort((a, b) => Number(b.current) - Number(a.current)).map(row));
  note(devices.length ? "" : "No devices are logged in.");
}

/**
 * @param {Device} device
 * @param {HTMLElement} shown
 * @param {HTMLButtonElement} button
 */
function rename(device, shown, button) {
  if (editing === device.id) {
    nameBox?.blur(); // the button says Save: leaving the box saves it (rename.js)
    return;
  }
  editing = device.id;
  // a phone shows no Enter key to save with: while the box is open its Rename button saves
  button.textContent = "Save";
  button.setAttribute("aria-label", `Save the name of ${device.name}`);
  nameBox = editTitle(shown, {
    current: device.name,
    label: `New name for ${device.name}`,
    save: async (name) => {
      const updated = await api("PATCH", `/api/devices/${encodeURIComponent(device.id)}`, { name });
      device.name = updated?.name ?? name;
    },
    done: () => {
      editing = null;
      nameBox = null;
      render();
    },
  });
}

/** @param {Device} device */
async function revoke(device) {
  if (!confirming.has(device.id)) {
    confirming.set(device.id, setTimeout(() => {
      confirming.delete(device.id);
      render();
    }, 4000));
    render();
    const button = /** @type {HTMLElement} */ (ui.list).querySelector(`[data-device-id="${CSS.escape(device.id)}"] .revoke-btn`);
    /** @type {HTMLButtonElement | null} */ (button)?.focus();
    return;
  }
  clearTimeout(confirming.get(device.id));
  confirming.delete(device.id);
  try {
    await api("DELETE", `/api/devices/${encodeURIComponent(device.id)}`);
  } catch (error) {
    if (error.status === 401) return loggedOut();
    if (error.status !== 404) note(`Could not log out “${device.name}”: ${error.message}`);
  }
  if (device.current) return loggedOut();
  await load();
}

async function load() {
  clearTimeout(timer);
  if (ended) return;
  try {
    devices = (await api("GET", "/api/devices")).devices || [];
    render();
  } catch (error) {
    if (error.status === 401) return loggedOut();
    note(`Cannot load the devices: ${error.message}. Retrying…`);
  }
  timer = setTimeout(() => document.visibilityState === "visible" && load(), REFRESH_MS);
}

if (ui.list) {
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && load());
  load();
}
