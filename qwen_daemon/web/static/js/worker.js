// @ts-check
// Registers the service worker (/sw.js) on every page, so the app is installable and Web Push
// notifications can be shown — and answered — with no tab open.
//
// The worker caches nothing (no fetch handler: every request still goes to the daemon, so an
// upgraded daemon never meets a stale UI); `updateViaCache: "none"` makes the browser check the
// script itself on every navigation. Where there is no service worker (plain http on a LAN
// address, an old browser) nothing happens here; the "Notify me" control says why.

export const SW_URL = "/sw.js";

/** The page runs under Trusted Types: this policy makes a script URL of our worker and nothing else. */
const policy = window.trustedTypes
  ? window.trustedTypes.createPolicy("qwen-daemon-worker", {
      /** @param {string} url */
      createScriptURL(url) {
        if (url !== SW_URL) throw new TypeError(`not the service worker: ${url}`);
        return url;
      },
    })
  : null;

/** The registration promise (null where service workers are unavailable). */
export const registered =
  "serviceWorker" in navigator && window.isSecureContext
    ? navigator.serviceWorker.register(policy ? policy.createScriptURL(SW_URL) : SW_URL, { scope: "/", updateViaCache: "none" }).catch((error) => {
        console.warn(`qwen-daemon: the service worker did not register: ${error.message}`);
        return null;
      })
    : Promise.resolve(null);

/** The active registration, or null when there is none (yet, or here at all). */
export async function registration() {
  if (!(await registered)) return null;
  return navigator.serviceWorker.ready;
}
