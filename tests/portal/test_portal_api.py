"""The JSON API: every route x role (allowed, 401, 403, 404), actions through the engine, path traversal."""

from __future__ import annotations

import http.client
import io
import json
import os
import zipfile
from decimal import Decimal
from urllib.parse import quote

import pytest
from portal_support import CSRF, MONTHS, PASSWORDS, LiveServer, basic

from pipelines.publish.outputs import statement_filename

# one pytest-xdist worker builds the sample once for all of them (dev.py test: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("portal")

ROLES = ("alice", "vera", "pam", "none", "wrong")  # approver, viewer, partner manager, no / wrong credentials


def _get(portal, path: str, who: str):
    c = portal.client()
    if who == "none":
        return c.get(path)
    if who == "wrong":
        r = c.get(path, auth=("vera", "not-the-password"))
        portal.state.throttle = type(portal.state.throttle)(lambda: portal.state.clock())  # no lockout between cases
        return r
    return c.get(path, auth=basic(who))


def _cases(sample):
    own, unpaid = sample.pm_partners
    other = sample.other_partner
    st = lambda pid: f"statements/{statement_filename(pid)}"  # noqa: E731
    f = "/api/months/2025-01/files/"
    ok3 = {"alice": 200, "vera": 200, "pam": 200}
    finance = {"alice": 200, "vera": 200, "pam": 403}
    return [
        ("/api/months", ok3),
        ("/api/months/2025-01", ok3),
        ("/api/months/2025-03", ok3),
        ("/api/months/2024-12", {"alice": 404, "vera": 404, "pam": 404}),
        ("/api/months/2025-13", {"alice": 404, "vera": 404, "pam": 404}),
        ("/api/months/latest", {"alice": 404, "vera": 404, "pam": 404}),
        (f + "remittance.csv", finance),
        (f + "exceptions.csv", finance),
        (f + "summary.json", finance),
        (f + "validation/report.html", finance),
        (f + "validation/results.json", finance),
        (f + "partner_balances.csv", ok3),
        (f + st(own), ok3),
        (f + st(unpaid), ok3),
        (f + st(other), {"alice": 200, "vera": 200, "pam": 404}),
        (f + "statements/NOPE-0000.csv", {"alice": 404, "vera": 404, "pam": 404}),
        (f + "statements.zip", ok3),
        (f + sample.payment_file, {"alice": 200, "vera": 403, "pam": 403}),
        (f + "payments/payments.json", {"alice": 404, "vera": 403, "pam": 403}),
        (f + "payments/nope.csv", {"alice": 404, "vera": 403, "pam": 403}),
        ("/api/months/2025-02/files/" + sample.payment_file, {"alice": 404, "vera": 403, "pam": 403}),
        (f + "manifest.json", {"alice": 404, "vera": 404, "pam": 404}),
        (f + "approval.json", {"alice": 404, "vera": 404, "pam": 404}),
        (f + "nope.csv", {"alice": 404, "vera": 404, "pam": 404}),
        ("/api/months/2024-12/files/remittance.csv", {"alice": 404, "vera": 404, "pam": 404}),
        (f"/api/partners/{own}/statements/2025-01", ok3),
        (f"/api/partners/{other}/statements/2025-01", {"alice": 200, "vera": 200, "pam": 404}),
        ("/api/partners/NOPE-0000/statements/2025-01", {"alice": 404, "vera": 404, "pam": 404}),
        (f"/api/partners/{own}/statements/2024-12", {"alice": 404, "vera": 404, "pam": 404}),
        (f"/api/partners/{sample.never_statement}/statements/2025-01", {"alice": 404, "vera": 404, "pam": 404}),
        ("/api/nothing-here", {"alice": 404, "vera": 404, "pam": 404}),
    ]


def _case_ids():
    return [f"case{i}" for i in range(31)]


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("case", range(31), ids=_case_ids())
def test_get_route_by_role(shared_portal, sample, case, who):
    cases = _cases(sample)
    assert len(cases) == 31
    path, expected = cases[case]
    r = _get(shared_portal, path, who)
    want = 401 if who in ("none", "wrong") else expected[who]
    assert r.status_code == want, (path, who, r.status_code, r.text[:300])
    if want == 401:
        assert r.headers["www-authenticate"].startswith("Basic")
        assert "set-cookie" not in r.headers
    if want >= 400:
        assert r.headers["content-type"].startswith("application/json")
        assert "error" in r.json()


def test_api_never_uses_cookies(shared_portal):
    c = shared_portal.login("vera")
    assert c.get("/api/months").status_code == 401  # the session cookie is no credential for the API
    r = c.get("/api/months", auth=basic("vera"))
    assert r.status_code == 200 and "set-cookie" not in r.headers


def test_months_as_each_role(shared_portal, sample):
    months = _get(shared_portal, "/api/months", "vera").json()["months"]
    assert [m["month"] for m in months] == list(MONTHS)
    jan = months[0]
    assert jan["state"] == "released" and jan["approved_by"] == "carol" and jan["released_by"] == "carol"
    assert jan["validation"] in ("passed", "warnings")
    assert set(jan["by_payout_currency"]) and all("net_paid" in v for v in jan["by_payout_currency"].values())
    assert months[1]["state"] == "draft"
    pm = _get(shared_portal, "/api/months", "pam").json()["months"]
    for m in pm:  # no totals, exceptions or validation for a partner manager
        assert "by_payout_currency" not in m and "exceptions" not in m and "validation" not in m
        assert set(m["partners"]) <= set(sample.pm_partners)


def test_month_detail_as_each_role(shared_portal, sample):
    alice = _get(shared_portal, "/api/months/2025-01", "alice").json()
    vera = _get(shared_portal, "/api/months/2025-01", "vera").json()
    pam = _get(shared_portal, "/api/months/2025-01", "pam").json()
    assert alice["payments"]["files"] and "payments" not in vera
    paths = {f["path"] for f in vera["files"]}
    assert {"remittance.csv", "exceptions.csv", "summary.json", "validation/report.html"} <= paths
    assert not any(p.startswith("payments/") for p in paths)
    assert "control_totals" not in pam and "payments" not in pam
    pm_paths = {f["path"] for f in pam["files"]}
    assert pm_paths == {"partner_balances.csv"} | {f"statements/{statement_filename(p)}" for p in sample.pm_partners}
    assert {b["partner_id"] for b in pam["balances"]} == set(sample.pm_partners)
    changes = _get(shared_portal, "/api/months/2025-02", "vera").json()["changes"]
    assert changes["previous_month"] == "2025-01"
    assert changes["newly_paid"] or changes["no_longer_paid"] or changes["net_moved"]
    for row in changes["net_moved"]:
        if row["change_pct"] is not None:
            old, new = Decimal(row["previous_net"]), Decimal(row["net"])
            assert abs(new - old) / abs(old) > Decimal("0.2")
    pm_changes = pam["changes"]
    for key in ("newly_paid", "no_longer_paid", "net_moved"):
        assert all(r["partner_id"] in sample.pm_partners for r in pm_changes[key])


def test_partner_manager_downloads_only_its_rows(shared_portal, sample):
    r = _get(shared_portal, "/api/months/2025-01/files/partner_balances.csv", "pam")
    lines = r.text.strip().split("\n")
    assert lines[0].startswith("partner_id,")
    assert sorted(line.split(",")[0] for line in lines[1:]) == sorted(sample.pm_partners)
    z = zipfile.ZipFile(io.BytesIO(_get(shared_portal, "/api/months/2025-01/files/statements.zip", "pam").content))
    assert sorted(z.namelist()) == sorted(f"2025-01/statements/{statement_filename(p)}" for p in sample.pm_partners)
    full = zipfile.ZipFile(io.BytesIO(_get(shared_portal, "/api/months/2025-01/files/statements.zip", "vera").content))
    listed = json.loads((sample.pristine / "2025-01" / "manifest.json").read_text())["files"]
    assert sorted(full.namelist()) == sorted(f"2025-01/{p}" for p in listed if p.startswith("statements/"))
    own = sample.pm_partners[0]
    body = _get(shared_portal, f"/api/partners/{own}/statements/2025-01", "pam").json()
    assert body["partner_id"] == own and body["rows"][0]["entry"] == "opening_balance"


def test_download_is_the_file_and_is_audited(shared_portal, sample):
    r = _get(shared_portal, "/api/months/2025-01/files/remittance.csv", "vera")
    assert r.content == (sample.pristine / "2025-01" / "remittance.csv").read_bytes()
    assert r.headers["content-disposition"].startswith("attachment")
    line = shared_portal.audit()[-1]
    assert (line["actor"], line["action"], line["month"], line["outcome"], line["detail"]) == \
        ("vera", "download", "2025-01", "ok", "remittance.csv")
    _get(shared_portal, f"/api/months/2025-01/files/{sample.payment_file}", "vera")
    line = shared_portal.audit()[-1]
    assert (line["action"], line["outcome"]) == ("download", "refused") and sample.payment_file in line["detail"]
    r = _get(shared_portal, f"/api/months/2025-01/files/{sample.payment_file}", "alice")
    assert r.status_code == 200
    assert r.content == (sample.pristine / "2025-01" / sample.payment_file).read_bytes()


# --- actions ----------------------------------------------------------------------------------------

def _post(portal, path, who, body=None, content_type="application/json"):
    c = portal.client()
    headers = {"content-type": content_type} if content_type else {}
    data = json.dumps(body if body is not None else {}) if content_type else None
    auth = None if who == "none" else ("vera", "wrong-password") if who == "wrong" else basic(who)
    return c.post(path, content=data, headers=headers, auth=auth)


@pytest.mark.parametrize("action", ["approve", "reopen", "release"])
def test_actions_refused_for_roles_that_may_not(portal, action):
    body = {"note": "x", "reason": "y"}
    assert _post(portal, f"/api/months/2025-02/{action}", "none", body).status_code == 401
    assert _post(portal, f"/api/months/2025-02/{action}", "wrong", body).status_code == 401
    for who in ("vera", "pam"):
        r = _post(portal, f"/api/months/2025-02/{action}", who, body)
        assert r.status_code == 403, r.text
        line = portal.audit()[-1]
        assert (line["actor"], line["action"], line["month"], line["outcome"]) == (who, action, "2025-02", "refused")
    assert _post(portal, f"/api/months/2024-12/{action}", "alice", body).status_code == 404
    assert _post(portal, f"/api/months/..%2F2025-02/{action}", "alice", body).status_code == 404
    assert (portal.out / "2025-02" / "approval.json").exists() is False


def test_approve_reopen_release_through_the_api(portal):
    r = _post(portal, "/api/months/2025-03/approve", "alice", {"note": "too early"})
    assert r.status_code == 409 and "approve 2025-02 first" in r.json()["error"]
    assert _post(portal, "/api/months/2025-02/approve", "alice", None, content_type=None).status_code == 415
    assert _post(portal, "/api/months/2025-02/approve", "alice", None, content_type="text/plain").status_code == 415
    assert _post(portal, "/api/months/2025-02/frobnicate", "alice", {}).status_code == 404
    r = _post(portal, "/api/months/2025-02/approve", "alice", {"note": "checked"})
    assert r.status_code == 200, r.text
    assert r.json()["approved_by"] == "alice" and r.json()["note"] == "checked"
    assert json.loads((portal.out / "2025-02" / "approval.json").read_text())["approved_by"] == "alice"
    r = _post(portal, "/api/months/2025-02/reopen", "alice", {"reason": "check a fee"})
    assert r.status_code == 409 and "2025-03 was computed after it" in r.json()["error"]
    r = _post(portal, "/api/months/2025-02/release", "bob", {"execution_date": "2020-01-01"})
    assert r.status_code == 409 and "before the release" in r.json()["error"]
    r = _post(portal, "/api/months/2025-02/release", "bob", {})
    assert r.status_code == 200, r.text
    detail = portal.client().get("/api/months/2025-02", auth=basic("alice")).json()
    assert detail["state"] == "released" and detail["released_by"] == "bob"
    name = detail["payments"]["files"][0]["path"]
    assert portal.client().get(f"/api/months/2025-02/files/{name}", auth=basic("alice")).status_code == 200
    r = _post(portal, "/api/months/2025-02/release", "alice", {})
    assert r.status_code == 409 and "already released" in r.json()["error"]
    r = _post(portal, "/api/months/2025-01/reopen", "alice", {"reason": "x"})
    assert r.status_code == 409 and "released" in r.json()["error"]
    actions = [(a["actor"], a["action"], a["month"], a["outcome"]) for a in portal.audit()]
    assert ("alice", "approve", "2025-02", "ok") in actions
    assert ("alice", "approve", "2025-03", "refused") in actions
    assert ("bob", "release", "2025-02", "ok") in actions
    assert ("alice", "reopen", "2025-02", "refused") in actions


def test_bad_json_bodies(portal):
    c = portal.client()
    h = {"content-type": "application/json"}
    assert c.post("/api/months/2025-02/approve", content="{", headers=h, auth=basic("alice")).status_code == 400
    assert c.post("/api/months/2025-02/approve", content="[1]", headers=h, auth=basic("alice")).status_code == 400
    assert c.post("/api/months/2025-02/approve", content='{"note": 5}', headers=h,
                  auth=basic("alice")).status_code == 400
    assert c.post("/api/months/2025-02/approve", content=json.dumps({"note": "x" * 1001}), headers=h,
                  auth=basic("alice")).status_code == 422
    assert not (portal.out / "2025-02" / "approval.json").exists()


# --- paths ------------------------------------------------------------------------------------------

TRAVERSALS = [
    "/api/months/2025-01/files/%2e%2e/2025-02/remittance.csv",
    "/api/months/2025-01/files/%2e%2e%2f2025-02%2fremittance.csv",
    "/api/months/2025-01/files/..%2f..%2faudit.jsonl",
    "/api/months/2025-01/files/%2E%2E/%2E%2E/users.yaml",
    "/api/months/2025-01/files/statements/%2e%2e/remittance.csv",
    "/api/months/2025-01/files/%2e/remittance.csv",
    "/api/months/2025-01/files/%2fetc%2fpasswd",
    "/api/months/2025-01/files//etc/passwd",
    "/api/months/2025-01/files/remittance.csv%00.txt",
    "/api/months/2025-01/files/statements%5c..%5cremittance.csv",
    "/api/months/%2e%2e/files/audit.jsonl",
    "/api/months/..%2f2025-01/files/remittance.csv",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_encoded_traversal_is_404(shared_portal, path):
    for who in ("alice", "vera", "pam"):
        r = shared_portal.client().get(path, auth=basic(who))
        assert r.status_code == 404, (path, who, r.status_code)


def test_statement_of_another_partner_by_any_spelling(shared_portal, sample):
    other = sample.other_partner
    for path in (f"/api/months/2025-01/files/statements/{statement_filename(other)}",
                 f"/api/months/2025-01/files/statements/{quote(statement_filename(other))}",
                 f"/api/months/2025-01/files/statements/x/%2e%2e/{statement_filename(other)}",
                 f"/api/partners/{other}/statements/2025-01",
                 f"/api/partners/{quote(other, safe='')}/statements/2025-01"):
        assert shared_portal.client().get(path, auth=basic("pam")).status_code == 404, path
    c = shared_portal.login("pam")
    for path in (f"/months/2025-01/files/statements/{statement_filename(other)}", f"/partners/{other}",
                 f"/partners/{other}?month=2025-01"):
        assert c.get(path).status_code == 404, path
    r = c.get(f"/partners?q={other}")
    assert r.status_code == 200 and f'href="/partners/{other}"' not in r.text and "No partner matches" in r.text
    r = c.get("/partners")
    assert f'href="/partners/{other}"' not in r.text and f'href="/partners/{sample.pm_partners[0]}"' in r.text


def test_raw_dot_segments_over_http(shared_portal):
    """A client that sends `../` as is (httpx would normalise it): uvicorn passes it, the portal refuses."""
    server = LiveServer(shared_portal.app)
    try:
        import base64

        auth = "Basic " + base64.b64encode(f"vera:{PASSWORDS['vera']}".encode()).decode()
        for raw in ("/api/months/2025-01/files/../2025-02/remittance.csv",
                    "/api/months/2025-01/files/../../audit.jsonl",
                    "/api/months/2025-01/files/statements/../../../users.yaml",
                    "/api/months/../files/audit.jsonl",
                    "/months/2025-01/files/../../audit.jsonl"):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.putrequest("GET", raw, skip_accept_encoding=True)
            conn.putheader("Authorization", auth)
            conn.endheaders()
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            assert resp.status in (303, 404), (raw, resp.status)  # a page without a session: the login form
            assert b'"seq"' not in body and b"password_hash" not in body
    finally:
        server.stop()


def test_symlinked_file_is_404(portal, tmp_path):
    """A file the manifest lists but that became a symbolic link (to a file outside) is never served."""
    secret = tmp_path / "secret.csv"
    secret.write_text("outside,the,month\n")
    target = portal.out / "2025-03" / "remittance.csv"  # a draft: writable
    os.unlink(target)
    os.symlink(secret, target)
    r = portal.client().get("/api/months/2025-03/files/remittance.csv", auth=basic("vera"))
    assert r.status_code == 404
    statements = portal.out / "2025-03" / "statements"
    os.rename(statements, portal.out / "2025-03" / "statements-real")
    os.symlink(portal.out / "2025-03" / "statements-real", statements)
    manifest = json.loads((portal.out / "2025-03" / "manifest.json").read_text())
    rel = next(p for p in manifest["files"] if p.startswith("statements/"))
    assert portal.client().get(f"/api/months/2025-03/files/{rel}", auth=basic("vera")).status_code == 404


def test_statement_links_work_for_ids_the_file_name_encodes(sample, tmp_path):
    """A partner id such as `=P/1` is stored as `statements/%3DP%2F1.csv`; the month page's and the
    partner page's links must quote the `%` so that the server finds that file, not `=P/1.csv`."""
    import re

    from builders import build, claim, partner, sub
    from portal_support import Portal

    from pipelines.engine import run_month

    pid = "=P/1"
    data = build(tmp_path / "data", partners=[partner(pid)], attributions=[claim("A1", "C1", pid)],
                 months={"2025-01": {"subscription_billing": [sub("L1", "C1", "400.00", "2025-01-10")]}})
    out = tmp_path / "out"
    run_month(data, out, "2025-01")
    assert (out / "2025-01" / "statements" / "%3DP%2F1.csv").exists()
    portal = Portal(sample, out)
    c = portal.login("alice")
    links = set()
    for page in ("/months/2025-01", f"/partners/{quote(pid, safe='')}?month=2025-01"):
        r = c.get(page)
        assert r.status_code == 200
        links |= set(re.findall(r'href="(/months/2025-01/files/statements/[^"]+)"', r.text))
    assert links == {"/months/2025-01/files/statements/%253DP%252F1.csv"}
    # followed through uvicorn: Starlette's TestClient decodes a path twice, a real server once
    import httpx

    server = LiveServer(portal.app)
    try:
        with httpx.Client(base_url=server.url) as live:
            token = CSRF.search(live.get("/login").text).group(1)
            r = live.post("/login", data={"username": "alice", "password": PASSWORDS["alice"], "csrf_token": token})
            assert r.status_code == 303
            r = live.get(links.pop())
    finally:
        server.stop()
    assert r.status_code == 200
    assert r.content == (out / "2025-01" / "statements" / "%3DP%2F1.csv").read_bytes()
