"""The portal in a real browser: headless Chromium (the system's, through Playwright) against uvicorn on
127.0.0.1. Each role logs in, sees the months, downloads, acts, meets a refusal and fails to reach what
it may not. A screenshot of each page goes to $PORTAL_SCREENSHOTS (or a pytest temp folder).

Chromium is required, never skipped: `apt-get install chromium` (CI installs it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from portal_support import PASSWORDS

from pipelines.publish.outputs import statement_filename

# one pytest-xdist worker builds the sample once for all of them (dev.py test: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("portal")

CHROMIUM = os.environ.get("PORTAL_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not path:
        pytest.fail(f"the portal's browser tests need Chromium at {CHROMIUM}: apt-get install chromium", pytrace=False)
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=path, headless=True)
        except Error as exc:
            pytest.fail(f"Chromium at {path} does not start ({str(exc).splitlines()[0]}): apt-get install chromium",
                        pytrace=False)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ["PORTAL_SCREENSHOTS"]) if os.environ.get("PORTAL_SCREENSHOTS") \
        else tmp_path_factory.mktemp("artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Session:
    """One browser context (its own cookies), its console errors, screenshots."""

    def __init__(self, browser, live, shots: Path, user: str):
        self.context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.live, self.shots, self.user = live, shots, user
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"script error: {e}"))
        self.page.on("dialog", lambda d: d.accept())  # the confirmations of approve / release / reopen

    def go(self, path: str):
        return self.page.goto(self.live.url + path)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{self.user}-{name}.png"), full_page=True)

    def login(self) -> None:
        self.go("/months")
        assert "/login" in self.page.url
        self.page.fill("#username", self.user)
        self.page.fill("#password", PASSWORDS[self.user])
        self.page.click("button[type=submit]")
        self.page.wait_for_url("**/months")

    def csp_errors(self) -> list[str]:
        """Content-Security-Policy violations and script errors (the 403/404 pages a test asks for are
        logged as failed resources, and do not count)."""
        return [e for e in self.errors
                if "Content Security Policy" in e or "Refused to" in e or e.startswith("script error")]

    def close(self) -> None:
        self.context.close()


def _charts_drawn(page) -> int:
    return page.evaluate("""() => Array.from(document.querySelectorAll('canvas[data-chart]'))
        .filter(c => window.Chart && window.Chart.getChart(c)).length""")


def test_login_page_and_a_wrong_password(browser, live, shots):
    s = Session(browser, live, shots, "vera")
    s.go("/months")
    s.shot("login")
    s.page.fill("#username", "vera")
    s.page.fill("#password", "not-the-password")
    s.page.click("button[type=submit]")
    assert "Wrong user name or password" in s.page.inner_text("main")
    s.shot("login-refused")
    assert not s.csp_errors(), s.errors
    s.close()


def test_viewer(browser, live, shots, sample):
    s = Session(browser, live, shots, "vera")
    s.login()
    page = s.page
    assert page.locator("#months tbody tr").count() >= 3
    assert "2025-01" in page.inner_text("#months") and "released" in page.inner_text("#months")
    page.wait_for_function("() => window.Chart !== undefined")
    assert _charts_drawn(page) >= 1
    s.shot("months")
    s.go("/months/2025-01")
    assert "Approve" not in page.inner_text("main") or page.locator("form[action$='/approve']").count() == 0
    assert page.locator("a[href*='/files/payments/']").count() == 0
    s.shot("month")
    with page.expect_download() as info:
        page.click("a[href='/months/2025-01/files/remittance.csv']")
    download = info.value
    assert download.suggested_filename == "2025-01_remittance.csv"
    assert Path(download.path()).read_bytes() == (sample.pristine / "2025-01" / "remittance.csv").read_bytes()
    response = s.go("/months/2025-01/files/" + sample.payment_file)
    assert response.status == 403 and "Only an approver may download payment files" in page.inner_text("main")
    s.shot("payment-file-refused")
    s.go(f"/partners/{sample.pm_partners[0]}")
    page.wait_for_function("() => window.Chart !== undefined")
    assert _charts_drawn(page) >= 1 and page.locator("#statement tbody tr").count() > 1
    s.shot("partner")
    s.go("/partners?q=" + sample.pm_partners[0])
    assert page.locator("main tbody tr").count() == 1
    s.shot("partner-search")
    page.click("button.link")  # log out
    page.wait_for_url("**/login?bye=1")
    assert "You are logged out" in page.inner_text("main")
    assert not s.csp_errors(), s.errors
    s.close()


def test_approver(browser, live, shots):
    s = Session(browser, live, shots, "alice")
    s.login()
    page = s.page
    s.go("/months/2025-03")
    page.fill("#note", "too early")
    page.click("form[action='/months/2025-03/approve'] button[type=submit]")
    page.wait_for_url("**/months/2025-03")
    alert = page.inner_text("div.flash.error")
    assert "approve 2025-02 first" in alert
    s.shot("refusal")
    s.go("/months/2025-02")
    page.fill("#note", "tied out to the bank")
    page.click("form[action='/months/2025-02/approve'] button[type=submit]")
    page.wait_for_url("**/months/2025-02")
    assert "2025-02 approved by alice" in page.inner_text("div.flash.ok")
    assert page.inner_text("h1 .badge") == "approved"
    s.shot("approved")
    s.go("/months/2025-01")
    with page.expect_download() as info:
        page.locator("a[href*='/files/payments/']").first.click()
    assert info.value.suggested_filename.startswith("2025-01_")
    s.shot("released-month")
    s.go("/months")
    assert "approved" in page.inner_text("#months")
    s.shot("months")
    assert not s.csp_errors(), s.errors
    s.close()


def test_partner_manager(browser, live, shots, sample):
    s = Session(browser, live, shots, "pam")
    s.login()
    page = s.page
    assert "Net paid per month" not in page.inner_text("main")
    s.shot("months")
    s.go("/months/2025-01")
    text = page.inner_text("main")
    assert all(p in text for p in sample.pm_partners) and sample.other_partner not in text
    assert page.locator("a[href='/months/2025-01/files/remittance.csv']").count() == 0
    s.shot("month")
    with page.expect_download() as info:
        page.click(f"a[href='/months/2025-01/files/statements/{statement_filename(sample.pm_partners[0])}']")
    assert info.value.suggested_filename == f"2025-01_{statement_filename(sample.pm_partners[0])}"
    s.go(f"/partners/{sample.pm_partners[0]}")
    page.wait_for_function("() => window.Chart !== undefined")
    assert _charts_drawn(page) >= 1
    s.shot("partner")
    response = s.go(f"/partners/{sample.other_partner}")
    assert response.status == 404
    s.shot("other-partner-404")
    assert s.go("/months/2025-01/files/remittance.csv").status == 403
    assert s.go(f"/months/2025-01/files/statements/{statement_filename(sample.other_partner)}").status == 404
    s.shot("remittance-refused")
    assert not s.csp_errors(), s.errors
    s.close()
