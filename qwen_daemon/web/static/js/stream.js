// @ts-check
// The session's live feed: one WebSocket that survives drops, restarts, sleep and background tabs
// without losing or repeating an event.
//
// How: every event carries a per-session `seq`. We remember the highest seq applied and reconnect
// with `?after=<it>`, so the daemon replays exactly what we missed. A seq at or below it is a
// duplicate and dropped; a seq beyond the next one is a gap, filled from `/events?after=` before
// anything later is applied. An app-level ping every 15 s must be acked within 10 s, otherwise the
// connection is treated as half-open (typical after a laptop sleeps) and replaced. Reconnects back
// off exponentially with jitter, and happen at once when the tab becomes visible or the network
// returns.
//
// The page also tells the daemon whether it is in front of the user — a `visibility` frame when
// the socket opens and at every change — so the daemon does not push a notification about this
// session to a device that is showing it. Those frames carry ids "vis-N" and their replies are
// not the user's business (a daemon without push answers them with an error frame).

import { api } from "./util.js";

const PING_EVERY_MS = 15_000;
const ACK_WITHIN_MS = 10_000;
const HELLO_WITHIN_MS = 10_000;
const BACKOFF_FIRST_MS = 300;
const BACKOFF_MAX_MS = 15_000;

/**
 * @typedef {"connecting" | "connected" | "reconnecting" | "offline"} Status
 * @typedef {"hello" | "ping" | "ack" | "retry"} Timer
 * @typedef {{type: "hello", instance_id: string, session: import("./protocol.js").SessionSummary, last_seq: number}} Hello
 *   the greeting that opens every connection
 */

export class SessionStream {
  /**
   * @param {string} sessionId the session to follow
   * @param {{
   *   onEvent: (event: import("./protocol.js").Event, live: boolean) => void,
   *   onHello: (hello: Hello) => void,
   *   onStatus: (status: Status, detail: string, retryAt: number) => void,
   *   onReset: () => void,
   *   onMissing: (count: number) => void,
   *   onEnd: (reason: "closed" | "gone" | "unauthorized") => void,
   *   onNotice?: (error: {code: string, message: string}) => void,
   * }} hooks onStatus's status is "connecting" | "connected" | "reconnecting" | "offline" (with, while waiting to
   *   retry, the time of the next attempt as a third argument, for a countdown); onReset: the daemon's
   *   log restarted, start the view over; onMissing: that many events are older than the daemon
   *   keeps; onEnd reason is "closed" (session closed), "gone" (deleted/unknown) or "unauthorized";
   *   onNotice: a live {code, message} the daemon could not commit yet (e.g. a full disk), which
   *   has no seq and so is never part of the replayable history.
   */
  constructor(sessionId, hooks) {
    this.id = sessionId;
    this.hooks = hooks;
    this.lastSeq = 0;
    /** @type {number | null} */
    this.liveAfter = null; // events above this seq are live; the rest is history replayed on load
    /** @type {WebSocket | null} */
    this.ws = null;
    this.greeted = false;
    this.attempts = 0;
    this.ended = false;
    this.pingId = 0;
    /** @type {import("./protocol.js").Event[]} */
    this.pending = []; // events that arrived beyond a gap, waiting for it to be filled
    this.filling = false;
    /** @type {Partial<Record<Timer, ReturnType<typeof setTimeout>>>} */
    this.timers = {};
    this.visibilityId = 0;
  }

  start() {
    const wake = () => this.wake();
    document.addEventListener("visibilitychange", () => {
      this.sendVisibility();
      if (document.visibilityState === "visible") wake();
    });
    window.addEventListener("online", wake);
    window.addEventListener("offline", () => this.ended || this.status("offline", "the network is down"));
    window.addEventListener("pageshow", (e) => e.persisted && this.kill("page restored"));
    this.connect();
  }

  /**
   * @param {Status} value
   * @param {string} [detail]
   * @param {number} [retryAt] when the next attempt is due (ms epoch)
   */
  status(value, detail = "", retryAt = 0) {
    this.current = value;
    this.hooks.onStatus(value, detail, retryAt);
  }

  // --- connection ------------------------------------------------------------------------------

  connect() {
    if (this.ended) return;
    this.clear("retry");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/api/sessions/${encodeURIComponent(this.id)}/ws?after=${this.lastSeq}`;
    if (!this.greeted && this.attempts === 0) this.status("connecting");
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    this.greeted = false;
    this.pending = []; // the replay after lastSeq brings these again
    ws.onopen = () => this.ws === ws && this.sendVisibility();
    ws.onmessage = (message) => this.message(ws, message.data);
    ws.onclose = (close) => this.ws === ws && this.lost(close);
    this.timers.hello = setTimeout(() => this.ws === ws && !this.greeted && this.kill("no greeting"), HELLO_WITHIN_MS);
  }

  /**
   * Drop the current socket (if any) without waiting for it, and reconnect.
   * @param {string} reason
   */
  kill(reason) {
    const ws = this.ws;
    this.ws = null;
    this.clear("hello", "ping", "ack");
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close(4001, reason);
      } catch {
        // already closing
      }
    }
    this.retry();
  }

  /** @param {CloseEvent} close */
  lost(close) {
    this.ws = null;
    this.clear("hello", "ping", "ack");
    const greeted = this.greeted;
    this.greeted = false;
    if (close.code === 4000) {
      this.finish("closed"); // the daemon closed the session: nothing more will come
      return;
    }
    if (!greeted) this.probe(); // refused before the greeting: find out why (404? 401? down?)
    else this.retry();
  }

  async probe() {
    try {
      await api("GET", `/api/sessions/${encodeURIComponent(this.id)}`);
      this.retry();
    } catch (error) {
      if (error.status === 404) this.finish("gone");
      else if (error.status === 401) this.finish("unauthorized");
      else this.retry(error.status === 0 ? "offline" : "reconnecting");
    }
  }

  retry(kind = "reconnecting") {
    if (this.ended || this.timers.retry) return;
    this.attempts++;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (this.attempts - 1));
    const delay = Math.round(base * (0.6 + 0.4 * Math.random()));
    const offline = kind === "offline" || navigator.onLine === false;
    this.status(offline ? "offline" : "reconnecting", `retrying in ${Math.ceil(delay / 1000)} s`, Date.now() + delay);
    this.timers.retry = setTimeout(() => {
      this.timers.retry = undefined;
      this.connect();
    }, delay);
  }

  /** The tab is visible again or the network is back: check the connection now, not later. */
  wake() {
    if (this.ended) return;
    if (this.ws && this.greeted) this.ping();
    else if (this.timers.retry) {
      this.clear("retry");
      this.connect();
    }
  }

  /** Follow the session again after it ended (e.g. it was reopened), from the last seq seen. */
  restart() {
    if (!this.ended) return;
    this.ended = false;
    this.attempts = 0;
    this.connect();
  }

  /** @param {"closed" | "gone" | "unauthorized"} reason */
  finish(reason) {
    this.ended = true;
    this.clear("hello", "ping", "ack", "retry");
    this.hooks.onEnd(reason);
  }

  /** @param {...Timer} names */
  clear(...names) {
    for (const name of names) {
      clearTimeout(this.timers[name]);
      this.timers[name] = undefined;
    }
  }

  // --- heartbeat -------------------------------------------------------------------------------

  schedulePing() {
    this.clear("ping");
    this.timers.ping = setTimeout(() => this.ping(), PING_EVERY_MS);
  }

  ping() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (this.timers.ack) return; // one outstanding ping is enough
    const id = `hb-${++this.pingId}`;
    this.awaitingPing = id;
    try {
      ws.send(JSON.stringify({ type: "ping", id }));
    } catch {
      this.kill("send failed");
      return;
    }
    this.timers.ack = setTimeout(() => this.ws === ws && this.kill("heartbeat not answered"), ACK_WITHIN_MS);
  }

  /** Tell the daemon whether this page is visible (it pushes no notification to a watcher). */
  sendVisibility() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const frame = { type: "visibility", visible: document.visibilityState === "visible", id: `vis-${++this.visibilityId}` };
    try {
      ws.send(JSON.stringify(frame));
    } catch {
      // the socket is going; the next one says it again when it opens
    }
  }

  // --- frames ----------------------------------------------------------------------------------

  /**
   * A message holds one or more frames, one JSON text per line: the daemon sends everything it
   * queued in one loop turn as one message (see qwen_daemon/server/stream.py).
   * @param {WebSocket} ws the socket it came on
   * @param {string} data the message as received
   */
  message(ws, data) {
    for (const line of String(data).split("\n")) {
      if (this.ws !== ws) return; // a frame before this one dropped the socket (e.g. a new log)
      this.frame(line);
    }
  }

  /** @param {string} text one frame: a line of a message */
  frame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if ((frame.type === "ack" || frame.type === "error") && String(frame.id).startsWith("vis-")) {
      return; // the reply to a visibility frame (see the top of this file)
    } else if (typeof frame.seq === "number") {
      this.receive(frame);
    } else if (frame.type === "hello") {
      this.hello(frame);
    } else if (frame.type === "error" && frame.error && this.hooks.onNotice) {
      this.hooks.onNotice(frame.error);
    } else if (frame.type === "ack" && frame.id === this.awaitingPing) {
      this.clear("ack");
      this.schedulePing();
      if (this.current !== "connected") this.status("connected"); // e.g. the network came back
    }
  }

  /** @param {Hello} frame */
  hello(frame) {
    this.clear("hello");
    if (frame.last_seq < this.lastSeq) {
      // a different log than the one we followed (seqs restarted): start the view over
      this.lastSeq = 0;
      this.liveAfter = null;
      this.pending = [];
      this.hooks.onReset();
      this.kill("history restarted");
      return;
    }
    this.greeted = true;
    this.attempts = 0;
    if (this.liveAfter === null) this.liveAfter = frame.last_seq;
    this.hooks.onHello(frame);
    this.status("connected");
    this.schedulePing();
  }

  /** @param {import("./protocol.js").Event} event */
  receive(event) {
    if (event.seq <= this.lastSeq) return; // already shown
    if (event.seq > this.lastSeq + 1) {
      this.pending.push(event);
      this.fill();
      return;
    }
    this.apply(event);
    this.drain();
  }

  /** @param {import("./protocol.js").Event} event */
  apply(event) {
    this.lastSeq = event.seq;
    this.hooks.onEvent(event, this.liveAfter !== null && event.seq > this.liveAfter);
  }

  drain() {
    if (!this.pending.length) return;
    this.pending.sort((a, b) => a.seq - b.seq);
    while (this.pending.length && this.pending[0].seq <= this.lastSeq + 1) {
      const next = /** @type {import("./protocol.js").Event} (the loop checked) */ (this.pending.shift());
      if (next.seq === this.lastSeq + 1) this.apply(next);
    }
  }

  /** Fetch what lies between lastSeq and the earliest waiting event, then apply in order. */
  async fill() {
    if (this.filling) return;
    this.filling = true;
    const before = this.lastSeq;
    let page;
    try {
      page = await api("GET", `/api/sessions/${encodeURIComponent(this.id)}/events?after=${this.lastSeq}`);
    } catch {
      page = null;
    }
    this.filling = false;
    if (page === null) {
      this.kill("could not fill a gap"); // reconnecting from lastSeq replays the gap as well
      return;
    }
    if (page.first_seq > this.lastSeq + 1) {
      this.hooks.onMissing(page.first_seq - this.lastSeq - 1); // older than the daemon keeps
      this.lastSeq = page.first_seq - 1;
    }
    for (const event of page.events) if (event.seq === this.lastSeq + 1) this.apply(event);
    this.drain();
    if (this.pending.length && this.pending[0].seq > this.lastSeq + 1) {
      if (this.lastSeq > before) this.fill();
      else this.kill("gap not fillable");
    }
  }
}
