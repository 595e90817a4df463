"""The portal's operator sessions: a cookie ``eco_<key id>.<generation>.<expiry>.<HMAC>`` that names an API
key (never holds it), signed by a secret that lives only in the running process. Signing out moves the
key's generation on, so the same cookie value is refused afterwards, in every browser of that key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading

PREFIX = "eco_"
KEYS_SIGNED_OUT_MAX = 10_000
"""Keys whose sign-out this process remembers; past it the signing secret is replaced instead, which signs
every operator out (bounded memory over a rare inconvenience)."""
COOKIE_LENGTH_MAX = 256


class OperatorSessions:
    """Makes and checks operator cookies; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(32)
        self._generation: dict[str, int] = {}  # key id -> sign-outs so far; absent: 0

    def _mac(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()

    def cookie(self, key_id: str, expires_unix: int) -> str:
        """A cookie value for a session of ``key_id`` until ``expires_unix``."""
        with self._lock:
            body = f"{key_id}.{self._generation.get(key_id, 0)}.{expires_unix}"
            return f"{PREFIX}{body}.{self._mac(body)}"

    def key_id(self, value: str, now_unix: int) -> str | None:
        """The key id of a cookie made here, of the key's current generation and not expired; else None."""
        parts = value.removeprefix(PREFIX).split(".")
        if not value.startswith(PREFIX) or len(value) > COOKIE_LENGTH_MAX or len(parts) != 4:
            return None
        key_id, generation, expires, mac = parts
        if not (generation.isdigit() and expires.isdigit()) or int(expires) <= now_unix:
            return None
        with self._lock:
            current = self._generation.get(key_id, 0)
            expected = self._mac(f"{key_id}.{generation}.{expires}")
        if not hmac.compare_digest(expected, mac) or int(generation) != current:
            return None
        return key_id

    def close(self, key_id: str) -> None:
        """Sign every session of ``key_id`` out: their cookies are refused from now on."""
        with self._lock:
            self._generation[key_id] = self._generation.get(key_id, 0) + 1
            if len(self._generation) > KEYS_SIGNED_OUT_MAX:
                self._secret = secrets.token_bytes(32)
                self._generation.clear()

    def __len__(self) -> int:
        return len(self._generation)
