"""The service's key and the one check of it: scoring, /readyz's details and the analysts' page all ask here.

`ServiceKey.matches` compares a given key in constant time. The analysts' page (serving/ui/) also takes a signed,
expiring session token in a cookie (`session_token`, `valid_session`): it proves the key without holding it.
"""
from __future__ import annotations

import hashlib
import hmac
import re

KEY_COOKIE = "aduana_ui"
SESSION_SECONDS = 12 * 3600
CLOCK_SKEW_S = 60  # a token issued by a replica whose clock runs this much ahead is still taken


class ServiceKey:
    """The service's key (ADUANA_API_KEY) and the one check of it, in constant time: scoring, /readyz's details
    and the analysts' page (serving/ui/) all ask `matches`. Without a key every check passes (`aduana serve`
    binds a keyless service to loopback unless told --allow-open)."""

    def __init__(self, key: str | None):
        self._secret = key.encode() if key else None

    @property
    def required(self) -> bool:
        return self._secret is not None

    def matches(self, given: str | None) -> bool:
        if self._secret is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self._secret)

    def sign(self, message: bytes) -> str:
        """An HMAC of `message` under the key (the analysts' page's cookie), so a token proves the key without
        holding it."""
        return hmac.new(self._secret or b"", message, hashlib.sha256).hexdigest()


def session_token(key: ServiceKey, issued_at: int) -> str:
    """A cookie's token: when it was issued (Unix seconds) and an HMAC of that under the service's key."""
    return f"{issued_at}.{key.sign(f'aduana analysts page {issued_at}'.encode())}"


def valid_session(key: ServiceKey, token: str | None, now: float) -> bool:
    """The token was signed with the service's key less than SESSION_SECONDS ago (compared in constant time)."""
    issued, _, _ = (token or "").partition(".")
    if not re.fullmatch(r"[0-9]{1,12}", issued) or not -CLOCK_SKEW_S <= now - int(issued) < SESSION_SECONDS:
        return False
    return hmac.compare_digest(token.encode(), session_token(key, int(issued)).encode())
