"""HTTP handlers for Web Push: the daemon's public key, subscriptions, and a test notification.

- ``GET /api/push/key`` → ``{"public_key"}``: the VAPID public key (base64url, uncompressed
  P-256 point) a browser passes to ``pushManager.subscribe({applicationServerKey})``.
- ``POST /api/push/subscriptions`` with ``PushSubscription.toJSON()`` → 201 ``{id}``; the same
  endpoint again updates that subscription (keys, device) and answers 200 with its id.
  400 for a bad endpoint or keys (``push/subscriptions.py`` says which), 429 at the cap.
- ``GET /api/push/subscriptions`` → ``{"subscriptions": [{id, device_id, endpoint_origin,
  expiration_time, created_at, current}]}``: never the full endpoint (a capability URL);
  ``current``: made by the device asking (the bearer token is one device, ``device_id`` null).
- ``DELETE /api/push/subscriptions/{id}`` → 204, or 404.
- ``POST /api/push/test`` (``{"subscription_id"}`` optional) → 202 ``{"sent": n}``: a ``test``
  notification to the asking device's subscriptions, or to the one named (a device may only name
  its own; the bearer token any).

A subscription belongs to the device whose credential made it (``self.device_id``), so revoking
the device ends its pushes (``PushService.device_revoked``).
"""

from __future__ import annotations

from typing import Any

from qwen_daemon.contract.bodies import PushSubscribe, PushTest
from qwen_daemon.errors import PushUnavailable, SubscriptionNotFound
from qwen_daemon.push import subscriptions
from qwen_daemon.push.keys import VapidKeyError
from qwen_daemon.push.service import PushService
from qwen_daemon.server.base import BaseHandler
from qwen_daemon.server.bodies import validated
from qwen_daemon.server.sessions_api import _ID


class _PushHandler(BaseHandler):
    @property
    def push(self) -> PushService:
        return self.context.push

    async def public_key(self) -> str:
        """The VAPID public key (loaded in a worker thread, with ``cryptography``, on first use)."""
        try:
            return await self.push.public_key()
        except (VapidKeyError, OSError) as exc:
            raise PushUnavailable(str(exc)) from None


class PushKeyHandler(_PushHandler):
    async def get(self) -> None:
        self.write_json({"public_key": await self.public_key()})


class SubscriptionsHandler(_PushHandler):
    def get(self) -> None:
        listed = [
            {**sub.as_json(), "current": sub.device_id == self.device_id}
            for sub in self.push.subscriptions.all()
        ]
        self.write_json({"subscriptions": listed})

    async def post(self) -> None:
        data = self.json_body()
        # a subscription is useless without the key, and loading it first (in a thread) spares the
        # event loop the import of cryptography that checking p256dh needs
        await self.public_key()
        body = validated(PushSubscribe, data)
        endpoint, p256dh, auth, expiration = subscriptions.parse(body, self.context.push_insecure_endpoints)
        self.manager.persist.require_writable()  # 507 while the database cannot be written
        sub, created = self.push.subscriptions.add(self.device_id, endpoint, p256dh, auth, expiration)
        self.set_header("Location", f"/api/push/subscriptions/{sub.id}")
        self.write_json({"id": sub.id}, status=201 if created else 200)


class SubscriptionHandler(_PushHandler):
    def delete(self, sub_id: str) -> None:
        if not self.push.subscriptions.remove(sub_id):
            raise SubscriptionNotFound(f"no push subscription {sub_id}")
        self.set_status(204)
        self.finish()


class PushTestHandler(_PushHandler):
    async def post(self) -> None:
        sub_id = self.body(PushTest, optional=True).get("subscription_id")
        if sub_id is None:
            targets = self.push.subscriptions.of_device(self.device_id)
        else:
            sub = self.push.subscriptions.get(sub_id)
            if sub is None or (self.device_id is not None and sub.device_id != self.device_id):
                raise SubscriptionNotFound(f"no push subscription {sub_id} of this device")
            targets = [sub]
        self.write_json({"sent": await self.push.send_trial(targets)}, status=202)


routes: list[Any] = [
    (r"/api/push/key", PushKeyHandler),
    (r"/api/push/subscriptions", SubscriptionsHandler),
    (rf"/api/push/subscriptions/{_ID}", SubscriptionHandler),
    (r"/api/push/test", PushTestHandler),
]
