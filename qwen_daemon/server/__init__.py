"""The Tornado server: one handler module per domain, joined in app.py."""
