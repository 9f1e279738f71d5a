"""The notifier: watches every session's committed events and tells whoever walked away.

Hook: :meth:`PushService.observe` is called by each session's event log for every event it
publishes, i.e. only once the event is committed (``events.py``: publish follows the commit),
so nothing is pushed that a crash could take back. It decides on the event loop, synchronously
and cheaply (a type check first: most events are chunks), and hands the sending to tasks.

Triggers (see ``payload.py`` for what each says): ``permission_request`` (urgency high), a
``turn_ended`` that finished, failed or was interrupted (not one a user cancelled), and a
session that moved to ``failed`` after having run (one that failed at creation answered its
creator with the error).

Who is told: every Web Push subscription except those of a device that has the session open and
visible (the page says so over its WebSocket, ``server/stream.py``; the bearer token counts as
one device, ``None``), and every ``[[notify]]`` channel unless some client has the session open
and visible. A failing push never reaches the session: ``delivery.py`` retries, forgets a gone
subscription and logs a give-up once.

Stopping: a turn the stop interrupts is still announced. Deliveries started then get one attempt,
and :meth:`PushService.close` waits up to its ``grace`` for them before the daemon exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import urllib.parse
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from qwen_daemon.config import Settings
from qwen_daemon.push import channels, payload, webpush
from qwen_daemon.push.delivery import Retry, classify, deliver
from qwen_daemon.push.keys import load_or_create
from qwen_daemon.push.payload import Notification
from qwen_daemon.push.subscriptions import Subscription, Subscriptions
from qwen_daemon.sessions.events import Event

if TYPE_CHECKING:
    import tornado.httpclient

    from qwen_daemon.sessions.manager import SessionManager
    from qwen_daemon.sessions.session import Session

log = logging.getLogger(__name__)

TRIGGERS = frozenset({"permission_request", "turn_ended", "state"})
#: threads sending Web Push requests (each blocks for a request's round trip)
SENDERS = 4
#: deliveries in flight beyond which new ones are dropped (logged): a bound on memory
MAX_IN_FLIGHT = 2000
#: how far back a finished turn's notification looks for what the agent said
TURN_LOOKBACK = 400


class PushService:
    """Web Push keys and subscriptions, ``[[notify]]`` channels, and the notifier."""

    def __init__(self, settings: Settings, manager: SessionManager) -> None:
        self.settings = settings
        self._manager = manager
        self._subs: Subscriptions | None = None
        self._key: asyncio.Future[tuple[Any, str]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._http: tornado.httpclient.AsyncHTTPClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        #: device ids (None: the bearer token) with a visible WebSocket on a session (set by the app)
        self.watching: Callable[[str], set[str | None]] = lambda session_id: set()
        #: the daemon's own base URL, for absolute links when there is no ``public_url``
        self.own_url: Callable[[], str] = lambda: ""
        #: set when the daemon begins to stop: deliveries then make one attempt
        self.stopping = False
        #: decisions and outcomes, for tests and the bench
        self.stats: Counter[str] = Counter()

    # --- keys and subscriptions ---------------------------------------------------------------

    def start(self) -> None:
        """At start: make the VAPID key in the background if this is the first start."""
        if not self.settings.paths.vapid_key_file.exists():
            self._spawn(self.public_key())

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="push")
        return self._pool

    async def _vapid(self) -> tuple[Any, str]:
        if self._key is None:
            loop = asyncio.get_running_loop()
            self._key = loop.run_in_executor(
                self._executor(), load_or_create, self.settings.paths.vapid_key_file
            )
        try:
            return await asyncio.shield(self._key)
        except Exception:
            self._key = None  # the next call tries again (and says why again)
            raise

    async def public_key(self) -> str:
        """The base64url uncompressed P-256 point browsers subscribe with."""
        return (await self._vapid())[1]

    @property
    def subscriptions(self) -> Subscriptions:
        """Loaded on first use from the session database (the store's connection)."""
        if self._subs is None:  # the manager's persist raises RuntimeError before it is loaded
            # the store's connection, for the small tables: autocommit between commits
            self._subs = Subscriptions(self._manager.persist.store.connection)
        return self._subs

    def device_revoked(self, device_id: str) -> int:
        """Forget a revoked device's subscriptions (its pushes must stop with its access)."""
        removed = self.subscriptions.remove_device(device_id)
        if removed:
            log.info("removed %d push subscription(s) of the revoked device %s", removed, device_id)
        return removed

    def _forget(self, sub_id: str) -> None:
        try:
            self.subscriptions.remove(sub_id)
            self.stats["gone"] += 1
        except Exception as exc:  # a closed or full database: it is tried again next time
            log.warning("could not remove a gone push subscription: %s", exc)

    # --- the notifier -------------------------------------------------------------------------

    def observe(self, session: Session, event: Event) -> None:
        """Called for every committed event of every session; must never raise."""
        if event.type not in TRIGGERS:
            return
        try:
            self._observe(session, event)
        except Exception:
            log.exception("notifying about event %d of session %s failed", event.seq, session.id)

    def _observe(self, session: Session, event: Event) -> None:
        if event.type == "state" and '"failed"' not in event.json:
            return
        subs = self.subscriptions.all()
        if not subs and not self.settings.notify:
            return
        data = event.data
        make = self._maker(session, event, data)
        if make is None:
            return
        built: dict[bool, Notification | None] = {}

        def note(preview: bool) -> Notification | None:
            if preview not in built:
                built[preview] = make(preview)
            return built[preview]

        watching = self.watching(session.id)
        for sub in subs:
            if sub.device_id in watching:
                self.stats["skipped_visible"] += 1
                continue
            made = note(self.settings.push_preview)
            if made is not None:
                self._spawn(self._push(sub, made))
        for channel in self.settings.notify:
            if watching:
                self.stats["skipped_visible"] += 1
                continue
            made = note(self.settings.push_preview if channel.preview is None else channel.preview)
            if made is not None:
                self._spawn(self._tell_channel(channel, made))

    def _maker(
        self, session: Session, event: Event, data: dict[str, Any]
    ) -> Callable[[bool], Notification | None] | None:
        sid, title = session.id, session.title
        if event.type == "permission_request":
            return lambda preview: payload.permission(sid, title, data, preview)
        if event.type == "turn_ended":
            stop = str(data.get("stop_reason") or "")
            if stop in payload.QUIET_STOPS:
                return None
            said, error = _turn_text(session, event.seq)
            return lambda preview: payload.turn_ended(sid, title, stop, preview, said, error)
        if data.get("state") == "failed" and session.agent_session_id is not None:
            failure = session.failure
            return lambda preview: payload.session_failed(sid, title, failure, preview)
        return None

    async def send_trial(self, subs: list[Subscription]) -> int:
        """The test notification to ``subs`` (visible or not: the user asked for it)."""
        note = payload.trial()
        for sub in subs:
            self._spawn(self._push(sub, note))
        return len(subs)

    # --- sending ------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        if len(self._tasks) >= MAX_IN_FLIGHT:
            coro.close()
            self.stats["dropped"] += 1
            log.warning("%d notifications are in flight already; dropped one", MAX_IN_FLIGHT)
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a push task failed: %s", task.exception())

    def _claim_sub(self) -> str:
        """VAPID ``sub``: how a push service's operator reaches the sender."""
        public = self.settings.public_url
        if public and public.startswith("https://"):
            return payload_origin(public)
        return "mailto:qwen-daemon@example.invalid"

    async def _push(self, sub: Subscription, note: Notification) -> None:
        try:
            vapid, _public = await self._vapid()
        except Exception as exc:
            log.error("no Web Push key, so no push to %s: %s", sub.origin, exc)
            return
        data = json.dumps(note.payload(), ensure_ascii=False)
        loop = asyncio.get_running_loop()
        claim = self._claim_sub()

        async def attempt() -> None:
            await loop.run_in_executor(
                self._executor(), webpush.send, vapid, sub.info(), data, claim, note.urgency
            )

        what = f"the {note.kind} notification of session {note.session_id or '-'}"
        if await deliver(
            attempt, sub.origin, what, on_gone=lambda: self._forget(sub.id), retries=not self.stopping
        ):
            self.stats["sent"] += 1
        else:
            self.stats["failed"] += 1

    def absolute_url(self, path: str) -> str:
        """``path`` on the address users reach us at (``public_url``, else our own; set by the app)."""
        return self.own_url().rstrip("/") + path

    async def _tell_channel(self, channel: channels.Channel, note: Notification) -> None:
        import tornado.httpclient

        if self._http is None:
            self._http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
        http = self._http
        request = channels.request(channel, note, self.absolute_url(note.url))

        async def attempt() -> None:
            try:
                await http.fetch(request)
            except tornado.httpclient.HTTPClientError as exc:
                if exc.code == 599:  # Tornado's code for a timeout or a lost connection
                    raise Retry("no answer") from None
                headers = exc.response.headers if exc.response is not None else {}
                raise classify(exc.code, str(exc.message or "")[:100], headers.get("Retry-After")) from None
            except OSError as exc:
                raise Retry(type(exc).__name__) from None

        what = f"the {note.kind} notification of session {note.session_id}"
        if await deliver(attempt, f"{channel.type} {channel.origin}", what, retries=not self.stopping):
            self.stats["channel_sent"] += 1
        else:
            self.stats["channel_failed"] += 1

    async def close(self, grace: float = 2.0) -> None:
        """Give deliveries in flight up to ``grace`` seconds, then drop the rest (each logged)."""
        self.stopping = True
        pending = set(self._tasks)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*late, return_exceptions=True)
        if self._http is not None:
            self._http.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def payload_origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _turn_text(session: Session, seq: int) -> tuple[str, str]:
    """What the agent said in the turn that ended at ``seq`` (its last words) and the last error."""
    said: list[str] = []
    error = ""
    try:
        events = session.events.since(max(0, seq - TURN_LOOKBACK))
    except sqlite3.Error:
        return "", ""
    for event in reversed(events):
        if event.seq >= seq:
            continue
        if event.type in ("turn_started", "user_message"):
            break
        if event.type == "agent_message_chunk":
            said.append(str(event.data.get("text") or ""))
            if sum(map(len, said)) > payload.BODY_CHARS:
                break
        elif event.type == "error" and not error:
            error = str(event.data.get("message") or "")
    return "".join(reversed(said)), error
