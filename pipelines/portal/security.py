"""The portal's defences: sessions, CSRF tokens, login throttling, HTTP Basic parsing, security headers.

Sessions live on the server (`Sessions`): the cookie only carries a random session id signed with
itsdangerous, so logging out, removing a user or the idle timeout ends a session at once, whatever
the browser still holds. Each session has its own CSRF token (`secrets.token_urlsafe`), compared in
constant time. The login form, before there is a session, uses a double-submit token: a signed,
short-lived cookie whose value must come back in the form.

Throttling (`Throttle`): failed logins are counted per user name and per client address. A key
may fail `free` times (5 for a user name, 20 for an address); each failure from then on locks the
key for 30 s x 2^(failures - free), at most 15 minutes. While a key is locked every login through it
is refused without looking at the password. A success clears the user name's count (not the
address's); counts are forgotten an hour after the key's last failure.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from itsdangerous import BadSignature, Signer, TimestampSigner

IDLE_SECONDS = 30 * 60          # a session ends after 30 idle minutes (SPEC section 9)
ABSOLUTE_SECONDS = 12 * 3600    # and 12 hours after login, whatever the activity
LOGIN_FORM_SECONDS = 3600       # a login form's token is good for an hour

SESSION_COOKIE = "payouts_session"
LOGIN_COOKIE = "payouts_login"

Clock = Callable[[], float]


# --- sessions -------------------------------------------------------------------------------------

@dataclass
class Session:
    sid: str
    user: str
    csrf: str
    created: float
    last_seen: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind: ok | error, message)


class Sessions:
    """Server-side sessions keyed by a random id; the cookie holds the id, signed."""

    def __init__(self, secret_key: bytes, clock: Clock):
        self._signer = Signer(secret_key, salt="payouts-portal-session")
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def create(self, user: str) -> tuple[Session, str]:
        """A new session (a fresh id at every login: no session fixation); returns it and the cookie."""
        now = self.clock()
        sid = secrets.token_urlsafe(32)
        session = Session(sid, user, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._purge(now)
            self._sessions[sid] = session
        return session, self._signer.sign(sid).decode("ascii")

    def get(self, cookie: str | None, touch: bool = True) -> Session | None:
        """The live session a cookie names, or None (absent, forged, idle too long, too old)."""
        if not cookie:
            return None
        try:
            sid = self._signer.unsign(cookie).decode("ascii")
        except (BadSignature, UnicodeDecodeError, ValueError):
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if now - session.last_seen > IDLE_SECONDS or now - session.created > ABSOLUTE_SECONDS:
                del self._sessions[sid]
                return None
            if touch:
                session.last_seen = now
            return session

    def drop(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.sid, None)

    def drop_user(self, user: str) -> None:
        with self._lock:
            for sid in [s.sid for s in self._sessions.values() if s.user == user]:
                del self._sessions[sid]

    def _purge(self, now: float) -> None:
        for sid in [s.sid for s in self._sessions.values()
                    if now - s.last_seen > IDLE_SECONDS or now - s.created > ABSOLUTE_SECONDS]:
            del self._sessions[sid]


def same_token(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of two CSRF tokens (False when either is missing)."""
    if not expected or not given or not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))


class LoginTokens:
    """The login form's double-submit CSRF token: a signed, timestamped cookie and the same token in the form."""

    def __init__(self, secret_key: bytes, clock: Clock):
        clock_ref = clock

        class _Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock_ref())

        self._signer = _Signer(secret_key, salt="payouts-portal-login")

    def new(self) -> tuple[str, str]:
        """(token for the form, cookie value)."""
        token = secrets.token_urlsafe(32)
        return token, self._signer.sign(token).decode("ascii")

    def check(self, cookie: str | None, given: str | None) -> bool:
        if not cookie:
            return False
        try:
            token = self._signer.unsign(cookie, max_age=LOGIN_FORM_SECONDS).decode("ascii")
        except (BadSignature, UnicodeDecodeError, ValueError):
            return False
        return same_token(token, given)


# --- throttling -----------------------------------------------------------------------------------

@dataclass
class _Count:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


class Throttle:
    """Failed-login counts per key (`user:<name>`, `addr:<address>`), with exponential lockouts."""

    BASE_SECONDS = 30.0
    CAP_SECONDS = 15 * 60.0
    FORGET_SECONDS = 3600.0
    USER_FREE = 5
    ADDR_FREE = 20

    def __init__(self, clock: Clock):
        self.clock = clock
        self._counts: dict[str, _Count] = {}
        self._lock = threading.Lock()

    @staticmethod
    def keys(user: str, addr: str) -> list[tuple[str, int]]:
        return [(f"user:{user.casefold()}", Throttle.USER_FREE), (f"addr:{addr}", Throttle.ADDR_FREE)]

    def retry_after(self, user: str, addr: str) -> int:
        """Seconds until a login through these keys is tried again (0: now)."""
        now = self.clock()
        with self._lock:
            wait = 0.0
            for key, _ in self.keys(user, addr):
                c = self._live(key, now)
                if c is not None and c.locked_until > now:
                    wait = max(wait, c.locked_until - now)
        return int(wait) + (1 if wait % 1 else 0)

    def failed(self, user: str, addr: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._counts) > 10000:
                for k in [k for k, c in self._counts.items() if now - c.last_failure > self.FORGET_SECONDS]:
                    del self._counts[k]
            for key, free in self.keys(user, addr):
                c = self._live(key, now) or self._counts.setdefault(key, _Count())
                c.failures += 1
                c.last_failure = now
                if c.failures >= free:
                    c.locked_until = now + min(self.CAP_SECONDS, self.BASE_SECONDS * 2 ** (c.failures - free))

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._counts.pop(f"user:{user.casefold()}", None)

    def _live(self, key: str, now: float) -> _Count | None:
        c = self._counts.get(key)
        if c is not None and now - c.last_failure > self.FORGET_SECONDS and c.locked_until <= now:
            del self._counts[key]
            return None
        return c


# --- HTTP Basic -----------------------------------------------------------------------------------

def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def clean_actor(name: str) -> str:
    """A typed user name as the audit log's actor: printable, at most 64 characters."""
    text = "".join(ch for ch in name if ch.isprintable())[:64]
    return text or "(blank)"


# --- security headers -----------------------------------------------------------------------------

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
#: a validation report opened in the browser: its own inline styles, no script, sandboxed
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; sandbox"


class SecurityHeaders:
    """Pure ASGI middleware: security headers on every HTTP response (a route's own CSP wins), and
    `Cache-Control: no-store` on everything but the static assets."""

    def __init__(self, app, hsts: bool = False):
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}

                def add(name: str, value: str) -> None:
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))

                add("content-security-policy", CSP)
                add("x-content-type-options", "nosniff")
                add("x-frame-options", "DENY")
                add("referrer-policy", "no-referrer")
                add("cross-origin-opener-policy", "same-origin")
                add("cross-origin-resource-policy", "same-origin")
                add("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()")
                add("cache-control", "private, max-age=3600" if static else "no-store")
                if self.hsts:
                    add("strict-transport-security", "max-age=31536000")
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def wall_clock() -> float:
    return time.time()
