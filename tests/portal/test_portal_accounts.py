"""No page, API answer or download (payment files aside) shows more of an account than its last 4
characters: every page and every file of the sample, as each role, against partners.csv's account_ref
values and any IBAN-shaped text."""

from __future__ import annotations

import io
import json
import re
import zipfile
from urllib.parse import quote

import pytest

from portal_support import MONTHS, basic

# one pytest-xdist worker builds the sample once for all of them (dev.py test: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("portal")

IBAN = re.compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b")


def _texts(response) -> list[str]:
    body = response.content
    if response.headers.get("content-type", "").startswith("application/zip"):
        z = zipfile.ZipFile(io.BytesIO(body))
        return [z.read(name).decode("utf-8", "replace") for name in z.namelist()]
    return [body.decode("utf-8", "replace")]


class Checker:
    def __init__(self, refs: list[str]):
        self.refs = refs
        self.seen = 0

    def __call__(self, response, what: str) -> None:
        assert response.status_code == 200, (what, response.status_code)
        for text in _texts(response):
            self.seen += 1
            leaked = [ref for ref in self.refs if ref in text]
            assert not leaked, (what, "shows a full account_ref", leaked[:3])
            shaped = IBAN.findall(text)
            assert not shaped, (what, "shows IBAN-shaped text", shaped[:3])


def _manifest(sample, month) -> list[str]:
    return sorted(json.loads((sample.pristine / month / "manifest.json").read_text())["files"])


def test_the_checker_finds_accounts_in_payment_files(shared_portal, sample):
    """The control: the approver's payment files are the one place full accounts are (SPEC section 8)."""
    found = False
    for path in sorted((sample.pristine / "2025-01" / "payments").iterdir()):
        r = shared_portal.client().get(f"/api/months/2025-01/files/payments/{path.name}", auth=basic("alice"))
        if r.status_code == 200 and (any(ref in r.text for ref in sample.account_refs) or IBAN.search(r.text)):
            found = True
    assert found and len(sample.account_refs) > 50


def test_no_account_in_any_page_or_download(shared_portal, sample):
    check = Checker(sample.account_refs)
    refs = shared_portal.state.store.partner_refs()
    for user in ("alice", "vera", "pam"):
        c = shared_portal.login(user)
        pm = user == "pam"
        visible = sorted(sample.pm_partners) if pm else sorted(refs)
        pages = ["/months", "/partners", "/partners?q=a", "/partners?q=PRT"]
        for month in MONTHS:
            pages.append(f"/months/{month}")
        if user == "vera":  # every partner's page (the statement of its latest month)
            pages += [f"/partners/{quote(pid, safe='')}" for pid in visible]
        if pm:  # its partners' statements of every month
            pages += [f"/partners/{quote(pid, safe='')}?month={m}" for pid in visible for m in MONTHS
                      if shared_portal.state.store.statement_rel(m, pid)]
        if user == "alice":  # a sample of statements rendered as tables
            pages += [f"/partners/{quote(pid, safe='')}?month={m}" for pid in visible[::25] for m in MONTHS
                      if shared_portal.state.store.statement_rel(m, pid)]
        for path in pages:
            check(c.get(path), f"{user} {path}")
        for month in MONTHS:
            if pm:
                files = ["partner_balances.csv", "statements.zip"] + [
                    shared_portal.state.store.statement_rel(month, p) for p in sample.pm_partners
                    if shared_portal.state.store.statement_rel(month, p)]
            elif user == "vera":
                files = _manifest(sample, month) + ["statements.zip"]  # every file, each statement too
            else:
                files = [f for f in _manifest(sample, month) if not f.startswith("statements/")] + ["statements.zip"]
            for rel in files:
                check(c.get(f"/months/{month}/files/{rel}"), f"{user} {month}/{rel}")
            if not pm:
                check(c.get(f"/months/{month}/report"), f"{user} {month} report")
        api = shared_portal.client()
        check(api.get("/api/months", auth=basic(user)), f"{user} api months")
        for month in MONTHS:
            check(api.get(f"/api/months/{month}", auth=basic(user)), f"{user} api {month}")
            for pid in (sample.pm_partners if pm else visible[::10]):
                if shared_portal.state.store.statement_rel(month, pid):
                    check(api.get(f"/api/partners/{quote(pid, safe='')}/statements/{month}", auth=basic(user)),
                          f"{user} api statement {pid} {month}")
    assert check.seen > 1000
