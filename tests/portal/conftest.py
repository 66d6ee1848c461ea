"""Fixtures of the portal tests: one sample output root per session (3 months at `--scale 200`, the
first approved and released), copied for every test that changes a month; a users file with one
user per role; a live server (uvicorn in a thread) for the browser tests. Helpers: portal_support.py."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from portal_support import MONTHS, LiveServer, Portal, Sample, _write_users, copy_out


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> Sample:
    from pipelines import engine
    from pipelines.close.actions import Who
    from pipelines.demo.sample_data import write_sample

    root = tmp_path_factory.mktemp("portal-sample")
    data, out = root / "data", root / "pristine"
    write_sample(str(data), months=3, scale=200, seed=7)
    for month in MONTHS:
        engine.run_month(data, out, month)
    engine.approve(data, out, "2025-01", Who("carol"), "checked against the bank")
    engine.release(data, out, "2025-01", Who("carol"))

    def rows(path: Path) -> list[dict]:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    paid = [r["partner_id"] for r in rows(out / "2025-01" / "remittance.csv")]
    balances = [r["partner_id"] for r in rows(out / "2025-01" / "partner_balances.csv")]
    unpaid = [p for p in balances if p not in paid]
    pm = (paid[0], unpaid[0])
    other = next(p for p in paid[1:] if p not in pm)
    partners = rows(data / "reference" / "partners.csv")
    with_rows = set()
    for month in MONTHS:
        with_rows |= {r["partner_id"] for r in rows(out / month / "partner_balances.csv")}
    never = next(r["partner_id"] for r in partners if r["partner_id"] not in with_rows)
    refs = sorted({r["account_ref"] for r in partners if len(r["account_ref"]) > 4})
    payment_file = sorted(p.name for p in (out / "2025-01" / "payments").iterdir() if p.name != "payments.json")[0]
    users_file = root / "users.yaml"
    _write_users(users_file, pm)
    return Sample(data, out, users_file, pm, other, never, refs, f"payments/{payment_file}")


@pytest.fixture
def portal(sample, tmp_path) -> Portal:
    """A portal over a fresh copy of the sample (for tests that change months or the audit log)."""
    return Portal(sample, copy_out(sample, tmp_path / "out"))


@pytest.fixture(scope="session")
def shared_portal(sample, tmp_path_factory) -> Portal:
    """One portal for read-only tests (they still append audit lines)."""
    return Portal(sample, copy_out(sample, tmp_path_factory.mktemp("shared") / "out"))


@pytest.fixture(scope="module")
def live(sample, tmp_path_factory):
    """The portal served by uvicorn on 127.0.0.1 (a free port) over its own copy of the sample."""
    out = copy_out(sample, tmp_path_factory.mktemp("live") / "out")
    p = Portal(sample, out)
    server = LiveServer(p.app)
    server.portal = p
    yield server
    server.stop()
