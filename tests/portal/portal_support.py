"""Helpers of the portal tests (conftest.py has the fixtures): the users of each role, a TestClient
wrapper with a settable clock and login helpers, a live uvicorn server in a thread."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MONTHS = ("2025-01", "2025-02", "2025-03")
PASSWORDS = {
    "alice": "alice-approves-2025",
    "bob": "bob-approves-too-2025",
    "vera": "vera-only-views-2025",
    "pam": "pam-manages-partners",
}
ROLES = {"alice": "approver", "bob": "approver", "vera": "viewer", "pam": "partner_manager"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Sample:
    data: Path
    pristine: Path
    users_file: Path
    pm_partners: tuple[str, ...]       # pam's partners: paid in 2025-01, and one with a statement but unpaid
    other_partner: str                 # a partner with a 2025-01 statement that is not pam's
    never_statement: str               # a partner of partners.csv without any statement
    account_refs: list[str] = field(default_factory=list)
    payment_file: str = ""             # one payments/<file> of 2025-01


def _write_users(path: Path, pm_partners: tuple[str, ...]) -> None:
    from argon2 import PasswordHasher

    from pipelines.close import users

    # cheap argon2id parameters for the tests (the hash carries them; `payouts users add` uses the defaults)
    ph = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    table = {}
    for name, role in ROLES.items():
        table[name] = users.User(name, role, ph.hash(PASSWORDS[name]), pm_partners if role == "partner_manager" else ())
    users.save(path, table)


def copy_out(sample: Sample, dest: Path) -> Path:
    """A private copy of the sample's output root (the month folders keep their read-only modes)."""
    shutil.copytree(sample.pristine, dest, symlinks=True)
    return dest


class Portal:
    """A TestClient over a copy of the sample, with login helpers."""

    def __init__(self, sample: Sample, out: Path, **kw):
        from fastapi.testclient import TestClient

        from pipelines.portal import create_app

        self.sample = sample
        self.out = out
        self.app = create_app(out, sample.users_file, sample.data, secret_key=b"k" * 32, **kw)
        self.state = self.app.state.portal
        self.now = [1_800_000_000.0]
        self.state.clock = lambda: self.now[0]
        self._TestClient = TestClient

    def client(self, **kw):
        return self._TestClient(self.app, follow_redirects=False, **kw)

    def login(self, user: str, password: str | None = None, client=None):
        """A client logged in as `user` through the form (asserts it worked)."""
        c = client or self.client()
        r = c.get("/login")
        token = CSRF.search(r.text).group(1)
        r = c.post("/login", data={"username": user, "password": password or PASSWORDS[user], "csrf_token": token,
                                    "next": "/months"})
        assert r.status_code == 303, r.text[:500]
        return c

    def csrf(self, client, path: str = "/months") -> str:
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code)
        return CSRF.search(r.text).group(1)

    def audit(self) -> list[dict]:
        from pipelines.close import audit

        return audit.read(self.out)


def basic(user: str, password: str | None = None) -> tuple[str, str]:
    return (user, password or PASSWORDS[user])


# --- a live server for the browser tests ------------------------------------------------------------

class LiveServer:
    def __init__(self, app):
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        from pipelines.portal.app import server_options

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off", **server_options()))
        self.thread = threading.Thread(target=self.server.run, name="portal-live", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the portal did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


