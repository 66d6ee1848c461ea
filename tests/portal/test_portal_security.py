"""Pages: login, session cookie, CSRF on every form, idle expiry, throttled logins, roles, headers, audit."""

from __future__ import annotations

import json
import re

import pytest
from portal_support import CSRF, PASSWORDS, Portal, basic

from pipelines.close import users as users_mod

# one pytest-xdist worker builds the sample once for all of them (dev.py test: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("portal")

POSTS = [  # every form the portal has, with a harmless body
    ("/logout", {}),
    ("/months/2025-02/approve", {"note": "n"}),
    ("/months/2025-02/reopen", {"reason": "r"}),
    ("/months/2025-02/release", {"execution_date": ""}),
]


def _login_form(client):
    r = client.get("/login")
    assert r.status_code == 200
    return CSRF.search(r.text).group(1)


# --- login --------------------------------------------------------------------------------------------

def test_pages_redirect_to_the_login_form(shared_portal, sample):
    c = shared_portal.client()
    for path in ("/", "/months", "/months/2025-01", "/months/2024-12", "/partners", f"/partners/{sample.other_partner}",
                 "/months/2025-01/files/remittance.csv", "/months/2025-01/report"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    for path, body in POSTS:
        r = c.post(path, data=body)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path


def test_login_sets_a_strict_httponly_cookie_and_is_audited(portal):
    c = portal.client()
    token = _login_form(c)
    login_cookie = c.cookies.get("payouts_login")
    assert login_cookie
    r = c.post("/login", data={"username": "vera", "password": PASSWORDS["vera"], "csrf_token": token,
                               "next": "/months/2025-02"})
    assert r.status_code == 303 and r.headers["location"] == "/months/2025-02"
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith("payouts_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/" in cookie
    assert "Secure" not in cookie
    assert c.get("/months").status_code == 200
    line = portal.audit()[-1]
    assert (line["actor"], line["action"], line["outcome"]) == ("vera", "login", "ok")


def test_secure_cookies_behind_tls(sample, tmp_path):
    from portal_support import copy_out

    p = Portal(sample, copy_out(sample, tmp_path / "out"), secure_cookies=True)
    c = p.client(base_url="https://testserver")
    token = _login_form(c)
    r = c.post("/login", data={"username": "vera", "password": PASSWORDS["vera"], "csrf_token": token})
    cookies = r.headers.get_list("set-cookie")
    assert all("Secure" in h and "HttpOnly" in h for h in cookies)
    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_failed_login_is_refused_and_audited(portal):
    c = portal.client()
    token = _login_form(c)
    r = c.post("/login", data={"username": "vera", "password": "nope-nope-nope", "csrf_token": token})
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    assert "payouts_session" not in c.cookies
    r = c.post("/login", data={"username": "nobody", "password": "x", "csrf_token": _login_form(c)})
    assert r.status_code == 401
    lines = portal.audit()[-2:]
    assert [(x["actor"], x["action"], x["outcome"]) for x in lines] == [("vera", "login", "refused"),
                                                                          ("nobody", "login", "refused")]
    assert all("nope" not in x["detail"] for x in lines)  # never the password


def test_open_redirect_is_not_followed(portal):
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        c = portal.client()
        token = _login_form(c)
        r = c.post("/login", data={"username": "vera", "password": PASSWORDS["vera"], "csrf_token": token,
                                   "next": target})
        assert r.headers["location"] == "/months", target


# --- CSRF --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["missing", "wrong"])
def test_login_form_needs_its_csrf_token(portal, token):
    c = portal.client()
    _login_form(c)
    data = {"username": "vera", "password": PASSWORDS["vera"]}
    if token == "wrong":
        data["csrf_token"] = "x" * 43
    r = c.post("/login", data=data)
    assert r.status_code == 403 and "payouts_session" not in c.cookies
    other = portal.client()  # a token from another browser's form does not do either
    stolen = _login_form(other)
    r = portal.client().post("/login", data={**data, "csrf_token": stolen})
    assert r.status_code == 403
    assert portal.audit()[-1]["outcome"] == "refused"


@pytest.mark.parametrize("path,body", POSTS, ids=[p for p, _ in POSTS])
@pytest.mark.parametrize("token", ["missing", "wrong", "other-session"])
def test_every_form_post_needs_the_session_csrf_token(portal, path, body, token):
    c = portal.login("alice")
    data = dict(body)
    if token == "wrong":
        data["csrf_token"] = "A" * 43
    elif token == "other-session":
        data["csrf_token"] = portal.csrf(portal.login("bob"))
    r = c.post(path, data=data)
    assert r.status_code == 403, r.text[:300]
    assert not (portal.out / "2025-02" / "approval.json").exists()
    assert c.get("/months").status_code == 200  # still logged in: nothing happened
    if path != "/logout":
        line = portal.audit()[-1]
        assert (line["actor"], line["outcome"]) == ("alice", "refused") and "CSRF" in line["detail"]


def test_json_posts_to_form_routes_are_refused(portal):
    c = portal.login("alice")
    r = c.post("/months/2025-02/approve", content=json.dumps({"note": "x"}),
               headers={"content-type": "application/json"})
    assert r.status_code == 403 and not (portal.out / "2025-02" / "approval.json").exists()


# --- sessions ------------------------------------------------------------------------------------------

def test_session_expires_after_30_idle_minutes(portal):
    c = portal.login("vera")
    portal.now[0] += 29 * 60
    assert c.get("/months").status_code == 200
    portal.now[0] += 29 * 60  # activity restarted the 30 minutes
    assert c.get("/months").status_code == 200
    portal.now[0] += 31 * 60
    r = c.get("/months")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    portal.now[0] -= 60 * 60  # the session is gone on the server, not only too old
    assert c.get("/months").status_code == 303


def test_session_ends_12_hours_after_login(portal):
    c = portal.login("vera")
    for _ in range(25):
        portal.now[0] += 29 * 60
        status = c.get("/months").status_code
    assert status == 303


def test_logout_ends_the_session_on_the_server(portal):
    c = portal.login("vera")
    cookie = c.cookies.get("payouts_session")
    token = portal.csrf(c)
    r = c.post("/logout", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/login?bye=1"
    replay = portal.client()
    replay.cookies.set("payouts_session", cookie)
    assert replay.get("/months").status_code == 303


def test_forged_cookie_is_no_session(portal):
    c = portal.client()
    c.cookies.set("payouts_session", "made-up.signature")
    assert c.get("/months").status_code == 303


def test_a_removed_user_is_logged_out(portal, sample, tmp_path):
    users_file = tmp_path / "users.yaml"
    users_file.write_bytes(sample.users_file.read_bytes())
    portal.state.users_file = users_file
    c = portal.login("vera")
    assert c.get("/months").status_code == 200
    table = users_mod.load(users_file)
    del table["vera"]
    users_mod.save(users_file, table)
    assert c.get("/months").status_code == 303


def test_a_new_login_gets_a_new_session_id(portal):
    c = portal.login("vera")
    first = c.cookies.get("payouts_session")
    c.cookies.clear()
    c = portal.login("vera", client=c)
    assert c.cookies.get("payouts_session") != first


# --- throttling ----------------------------------------------------------------------------------------

def _try(portal, user, password, client=None):
    c = client or portal.client()
    token = _login_form(c)
    return c.post("/login", data={"username": user, "password": password, "csrf_token": token})


def test_failed_logins_lock_the_user_name(portal):
    for _ in range(5):
        assert _try(portal, "vera", "wrong-password").status_code == 401
    r = _try(portal, "vera", PASSWORDS["vera"])  # locked: even the right password is refused
    assert r.status_code == 429 and "Too many failed logins" in r.text and int(r.headers["retry-after"]) == 30
    assert _try(portal, "alice", PASSWORDS["alice"]).status_code == 303  # another user is not locked
    portal.now[0] += 31
    r = _try(portal, "vera", "wrong-password")  # the 6th failure doubles the lock
    assert r.status_code == 401
    r = _try(portal, "vera", PASSWORDS["vera"])
    assert r.status_code == 429 and 59 <= int(r.headers["retry-after"]) <= 60
    portal.now[0] += 61
    assert _try(portal, "vera", PASSWORDS["vera"]).status_code == 303  # a success clears the count
    assert _try(portal, "vera", "wrong-password").status_code == 401
    assert _try(portal, "vera", PASSWORDS["vera"]).status_code == 303
    refused = [x for x in portal.audit() if x["action"] == "login" and x["outcome"] == "refused"]
    assert any("throttled" in x["detail"] for x in refused)


def test_failed_logins_lock_the_client_address(portal):
    for i in range(20):  # a different user name each time: only the address adds up
        assert _try(portal, f"guess{i}", "wrong-password").status_code == 401
    assert _try(portal, "alice", PASSWORDS["alice"]).status_code == 429
    assert portal.client().get("/api/months", auth=basic("alice")).status_code == 429
    portal.now[0] += 31
    assert _try(portal, "alice", PASSWORDS["alice"]).status_code == 303


def test_api_basic_auth_is_throttled_too(portal):
    c = portal.client()
    for _ in range(5):
        assert c.get("/api/months", auth=("vera", "wrong-password")).status_code == 401
    r = c.get("/api/months", auth=basic("vera"))
    assert r.status_code == 429 and r.headers["retry-after"] == "30"
    assert r.json()["error"].startswith("Too many failed logins")
    portal.now[0] += 30
    assert c.get("/api/months", auth=basic("vera")).status_code == 200


# --- roles on pages ----------------------------------------------------------------------------------

def test_page_roles(shared_portal, sample):
    vera, pam, alice = shared_portal.login("vera"), shared_portal.login("pam"), shared_portal.login("alice")
    assert vera.get("/months/2025-01/files/" + sample.payment_file).status_code == 403
    assert alice.get("/months/2025-01/files/" + sample.payment_file).status_code == 200
    for path in ("remittance.csv", "exceptions.csv", "summary.json", "validation/report.html", sample.payment_file):
        assert pam.get(f"/months/2025-01/files/{path}").status_code == 403, path
    assert pam.get("/months/2025-01/report").status_code == 403
    assert vera.get("/months/2025-01/report").status_code == 200
    assert vera.get("/months/2024-12").status_code == 404
    assert vera.get("/partners/NOPE-0000").status_code == 404
    assert vera.get(f"/partners/{sample.pm_partners[0]}?month=2024-12").status_code == 404
    page = vera.get("/months/2025-01").text
    assert "/files/payments/" not in page and 'action="/months/2025-01/' not in page
    page = alice.get("/months/2025-01").text
    assert "/files/payments/" in page
    page = alice.get("/months/2025-02").text
    assert 'action="/months/2025-02/approve"' in page
    page = pam.get("/months/2025-01").text
    assert "remittance.csv" not in page and "Paid per payout currency" not in page
    assert all(f"/partners/{p}" in page for p in sample.pm_partners) and f"/partners/{sample.other_partner}" not in page
    page = pam.get("/months").text
    assert "Net paid per month" not in page and "data-chart" not in page


def test_viewer_posting_an_action_is_refused_and_audited(portal):
    for user in ("vera", "pam"):
        c = portal.login(user)
        r = c.post("/months/2025-02/approve", data={"csrf_token": portal.csrf(c), "note": "x"})
        assert r.status_code == 403
        line = portal.audit()[-1]
        assert (line["actor"], line["action"], line["month"], line["outcome"]) == (user, "approve", "2025-02", "refused")
    assert not (portal.out / "2025-02" / "approval.json").exists()


def test_actions_from_the_month_page(portal):
    c = portal.login("alice")
    token = portal.csrf(c, "/months/2025-03")
    r = c.post("/months/2025-03/approve", data={"csrf_token": token, "note": "early"})
    assert r.status_code == 303 and r.headers["location"] == "/months/2025-03"
    page = c.get("/months/2025-03").text
    assert "Approve refused: approve 2025-02 first: months are approved oldest first" in page
    r = c.post("/months/2025-02/approve", data={"csrf_token": token, "note": "tied out"})
    page = c.get("/months/2025-02").text
    assert "2025-02 approved by alice" in page and "Approval note: tied out" in page
    assert 'action="/months/2025-02/release"' in page and 'action="/months/2025-02/reopen"' in page
    c.post("/months/2025-02/reopen", data={"csrf_token": token, "reason": "a fee"})
    assert "2025-03 was computed after it" in c.get("/months/2025-02").text
    c.post("/months/2025-02/release", data={"csrf_token": token, "execution_date": ""})
    page = c.get("/months/2025-02").text
    assert "2025-02 released" in page and "/months/2025-02/files/payments/" in page


# --- headers ------------------------------------------------------------------------------------------

def test_security_headers_on_every_response(shared_portal, sample):
    c = shared_portal.login("alice")
    anon = shared_portal.client()
    responses = [
        anon.get("/login"), anon.get("/months"), anon.get("/static/portal.css"), anon.get("/static/nope.js"),
        anon.get("/api/months"), anon.get("/nowhere"), c.get("/months"), c.get("/months/2025-02"),
        c.get("/partners?q=a"), c.get(f"/partners/{sample.pm_partners[0]}"), c.get("/months/2025-01/files/remittance.csv"),
        c.get("/months/2025-01/report"), c.get("/months/2024-12"), c.get("/api/months", auth=basic("vera")),
        c.get("/api/months/2025-01/files/statements.zip", auth=basic("vera")),
    ]
    for r in responses:
        h = r.headers
        csp = h["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp.split("script-src")[-1].split(";")[0], \
            (r.url, csp)
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "no-referrer"
        if "/static/" not in str(r.url):
            assert h["cache-control"] == "no-store"
    report = responses[11]
    assert "sandbox" in report.headers["content-security-policy"] and "script-src" not in \
        report.headers["content-security-policy"]


def test_pages_have_no_inline_script(shared_portal, sample):
    c = shared_portal.login("alice")
    for path in ("/months", "/months/2025-01", "/months/2025-02", f"/partners/{sample.pm_partners[0]}", "/partners"):
        html = c.get(path).text
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert 'src="/static/' in tag, (path, tag)
        assert not re.search(r"<script\b[^>]*>(?!</script>)", html), path  # every script element is empty
        assert not re.search(r"\son[a-z]+\s*=", html), path  # no inline event handlers


def test_a_forged_forwarded_address_does_not_escape_the_throttle(live):
    """Served as `payouts serve` serves it: without FORWARDED_ALLOW_IPS, X-Forwarded-For is ignored,
    so rotating it does not make each failed login come from a new address."""
    import httpx

    with httpx.Client(base_url=live.url) as c:
        for i in range(20):
            r = c.get("/api/months", auth=(f"guess{i}", "wrong-password"),
                      headers={"X-Forwarded-For": f"10.9.{i}.7"})
            assert r.status_code == 401
        r = c.get("/api/months", auth=basic("alice"), headers={"X-Forwarded-For": "10.9.99.7"})
    assert r.status_code == 429
    refused = [x for x in live.portal.audit() if x["action"] == "login" and x["outcome"] == "refused"]
    assert refused and not any("10.9." in json.dumps(x) for x in refused)
