"""Reaching the user who walked away: Web Push (keys, subscriptions, sending) and ``[[notify]]``
channels (webhook, ntfy), told by a notifier that watches every session's committed events.

``service.py`` is the notifier and the daemon's one object for all of it; ``payload.py`` says
what a notification says; ``delivery.py`` owns attempts and backoff; ``webpush.py`` and
``channels.py`` send. Nothing here imports the Web Push libraries until a push is sent.
"""
