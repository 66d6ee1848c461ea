"""The finance portal (SPEC section 9): `create_app` builds the FastAPI application, `serve` runs it.

Pages (a login form and a server-side session cookie, CSRF tokens on every form):

    GET  /months                         every month: state, who, totals, checks, chart of net paid
    GET  /months/{M}                     what changed, files, the actions the role allows
    GET  /months/{M}/files/{path}        a file listed in manifest.json (payments/...: payments.json)
    GET  /months/{M}/files/statements.zip    every statement the user may see, zipped on the fly
    GET  /months/{M}/report              the validation report, opened in the browser (sandboxed)
    POST /months/{M}/approve | reopen | release
    GET  /partners?q=                    search by id or name
    GET  /partners/{id}?month=M          a partner: balance history, its statement of a month
    GET  /login, POST /login, POST /logout

JSON API (HTTP Basic on every request, never a cookie):

    GET  /api/months, /api/months/{M}, /api/months/{M}/files/{path}
    POST /api/months/{M}/approve | reopen | release     (JSON body: note, reason, execution_date)
    GET  /api/partners/{id}/statements/{M}

Every route checks the role on the server: 401 (API) or a redirect to the login form (pages) without
a valid login; 403 for a role that may not; 404 for an unknown month, partner or file, a path
outside the month, and for a partner manager any partner that is not its own. Month changes go
through the engine (`pipelines.engine`), which takes the output root's lock and writes the audit
log; the portal adds `login` and `download` lines and its own refusals.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, urlencode

import jinja2
from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipelines import engine
from pipelines.close import audit
from pipelines.close import users as users_mod
from pipelines.close.actions import Who
from pipelines.close.states import APPROVED, DRAFT, RELEASED
from pipelines.core.text import unsafe_text
from pipelines.portal import security
from pipelines.portal.data import MONTH, Store, Unreadable, format_amount, open_month_file, to_decimal
from pipelines.portal.security import LOGIN_COOKIE, SESSION_COOKIE, Session

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

ROLE_LABELS = {"viewer": "Viewer", "approver": "Approver", "partner_manager": "Partner manager"}
ACTIONS = ("approve", "reopen", "release")
MAX_TEXT = 1000          # note / reason
MAX_NAME = 64            # a user name (users.py allows 1-64 characters)
MAX_PASSWORD = 1024      # never hash more than this
STATEMENT_PAGE_ROWS = 2000  # a statement longer than this is shown in part (the CSV has all of it)
SEARCH_LIMIT = 200
ZIP_SPOOL = 16 * 1024 * 1024

FILE_LABELS = {
    "remittance.csv": "Remittance: one row per partner paid (what finance pays)",
    "partner_balances.csv": "Partner balances: every partner with a movement or a balance",
    "exceptions.csv": "Exceptions: quarantined rows and reported non-payments",
    "summary.json": "Control totals and identities",
    "validation/report.html": "Validation report",
    "validation/results.json": "Validation results (machine-readable)",
}
#: what a partner manager may download besides its own statements (partner_balances: its rows only)
PM_FILES = {"partner_balances.csv"}
ZIP_NAME = "statements.zip"


class PortalError(Exception):
    """An HTTP error the portal answers itself: JSON under /api, a page elsewhere."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class LoginRequired(Exception):
    """A page asked for without a live session: redirect to the login form."""


@dataclass
class Ctx:
    """Who asks: the user (from the users file as it is now) and, for pages, the session."""

    user: users_mod.User
    session: Session | None = None

    @property
    def pm(self) -> bool:
        return self.user.role == "partner_manager"

    def sees(self, partner_id: str) -> bool:
        return self.user.sees_partner(partner_id)


def _media_type(rel: str) -> str:
    ext = rel.rsplit(".", 1)[-1].lower() if "." in rel else ""
    return {"csv": "text/csv; charset=utf-8", "json": "application/json", "html": "text/html; charset=utf-8",
            "xml": "application/xml", "ach": "text/plain; charset=us-ascii", "zip": "application/zip"}.get(
        ext, "application/octet-stream")


def _attachment(filename: str, inline: bool = False) -> str:
    kind = "inline" if inline else "attachment"
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return f"{kind}; filename=\"{ascii_name}\"; filename*=utf-8''{quote(filename, safe='')}"


def _when(text: str | None) -> str:
    """`2025-02-03T10:11:12Z` -> `2025-02-03 10:11 UTC`."""
    if not text:
        return ""
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(:\d{2})?Z", str(text))
    return f"{m.group(1)} {m.group(2)} UTC" if m else str(text)


def _audit_month(month: str) -> str | None:
    return month if isinstance(month, str) and MONTH.fullmatch(month) else None


def _short(text: str, n: int = 200) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return text if len(text) <= n else text[:n] + "..."


class Portal:
    """The application's state: users, sessions, throttle, the output root."""

    def __init__(self, out_dir: Path, users_file: Path, data_dir: Path, secret_key: bytes, secure_cookies: bool):
        self.out_dir = Path(out_dir)
        self.users_file = Path(users_file)
        self.data_dir = Path(data_dir)
        self.secure_cookies = secure_cookies
        self.clock = security.wall_clock  # tests replace it
        self.sessions = security.Sessions(secret_key, lambda: self.clock())
        self.login_tokens = security.LoginTokens(secret_key, lambda: self.clock())
        self.throttle = security.Throttle(lambda: self.clock())
        self.store = Store(self.out_dir, self.data_dir)
        # The output root's lock is re-entrant per process (outroot.exclusive), not per thread: the
        # portal's worker threads take turns here before calling the engine.
        self.action_lock = threading.Lock()
        self._users: tuple[tuple, dict[str, users_mod.User]] | None = None
        self._users_lock = threading.Lock()

    # --- users -----------------------------------------------------------------------------------

    def users(self) -> dict[str, users_mod.User]:
        """The users file as it is now (reloaded when it changes); a broken file lets nobody in."""
        try:
            st = self.users_file.stat()
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            return {}
        with self._users_lock:
            if self._users is not None and self._users[0] == key:
                return self._users[1]
        try:
            loaded = users_mod.load(self.users_file)
        except (users_mod.UsersError, OSError) as exc:
            log.error("users file %s: %s: nobody can log in", self.users_file.name, exc)
            loaded = {}
        with self._users_lock:
            self._users = (key, loaded)
        return loaded

    def check_password(self, name: str, password: str) -> users_mod.User | None:
        if len(name) > MAX_NAME or len(password) > MAX_PASSWORD or not name:
            return None
        return users_mod.authenticate(self.users(), name, password)

    # --- audit -----------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, month: str | None, outcome: str, detail: str) -> None:
        try:
            audit.append(self.out_dir, security.clean_actor(actor), action, month, outcome, _short(detail, 500))
        except OSError as exc:  # the answer still goes out; the operator sees the log
            log.error("audit log: %s", exc)


def create_app(out_dir: Path, users_file: Path, data_dir: Path, *, secret_key: bytes | None = None,
               secure_cookies: bool = False) -> FastAPI:
    """The portal over one output root. `users_file` is the YAML of `payouts users add`; `data_dir` is
    the input root that approve (the month's exports) and release (partners.csv, program.yaml) read.
    `secret_key` signs the cookies (random per process when None: sessions end with the process).
    `secure_cookies`: mark cookies Secure and send HSTS (behind a TLS proxy)."""
    portal = Portal(Path(out_dir), Path(users_file), Path(data_dir), secret_key or os.urandom(32), secure_cookies)
    store = portal.store
    app = _PortalApp(title="Partner payouts portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.portal = portal

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["amount"] = format_amount
    env.filters["when"] = _when
    env.filters["urlq"] = lambda s: quote(str(s), safe="")
    # a file's path in a link: each segment quoted (a statement's name may hold % from its encoding)
    env.filters["pathq"] = lambda s: "/".join(quote(seg, safe="") for seg in str(s).split("/"))
    env.filters["kb"] = lambda n: f"{int(n) / 1024:,.1f} KB" if n is not None else ""
    env.filters["neg"] = lambda s: bool(s) and str(s).startswith("-")
    templates = Jinja2Templates(env=env)

    # --- responses -------------------------------------------------------------------------------

    def _cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", secure=portal.secure_cookies, httponly=True,
                            samesite="strict")

    def render(request: Request, name: str, ctx: Ctx | None, status: int = 200, **context: Any) -> HTMLResponse:
        flashes: list[tuple[str, str]] = []
        if ctx is not None and ctx.session is not None:
            flashes, ctx.session.flash = ctx.session.flash, []
        context.update(
            user=ctx.user if ctx else None,
            role_label=ROLE_LABELS.get(ctx.user.role, ctx.user.role) if ctx else "",
            csrf=ctx.session.csrf if ctx and ctx.session else "",
            flashes=flashes,
            nav=context.get("nav", ""),
            charts=context.get("charts", False),
        )
        return templates.TemplateResponse(request, name, context, status_code=status)

    def is_api(request: Request) -> bool:
        return request.url.path == "/api" or request.url.path.startswith("/api/")

    def error_response(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        if is_api(request):
            return JSONResponse({"error": message}, status_code=status, headers=headers)
        ctx = getattr(request.state, "ctx", None)
        response = render(request, "error.html", ctx, status=status, status_code=status, message=message)
        for k, v in (headers or {}).items():
            if k.lower() != "www-authenticate":
                response.headers[k] = v
        return response

    @app.exception_handler(PortalError)
    async def _portal_error(request: Request, exc: PortalError):
        return error_response(request, exc.status, exc.message, exc.headers)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":  # a form posted after the session ended: back to the page, not the POST
            target = "/months"
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = {404: "Not found.", 405: "Method not allowed."}.get(exc.status_code, str(exc.detail))
        return error_response(request, exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return error_response(request, 422, "The request is not what this route takes.")

    @app.exception_handler(Unreadable)
    async def _unreadable(request: Request, exc: Unreadable):
        log.error("%s", exc)
        return error_response(request, 500, str(exc))

    # --- who asks --------------------------------------------------------------------------------

    def page_ctx(request: Request) -> Ctx:
        session = portal.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise LoginRequired()
        user = portal.users().get(session.user)
        if user is None:  # removed from the users file since it logged in
            portal.sessions.drop(session)
            raise LoginRequired()
        ctx = Ctx(user, session)
        request.state.ctx = ctx
        return ctx

    def client_addr(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def api_ctx(request: Request) -> Ctx:
        creds = security.basic_credentials(request.headers.get("authorization"))
        challenge = {"WWW-Authenticate": 'Basic realm="payouts", charset="UTF-8"'}
        if creds is None:
            raise PortalError(401, "HTTP Basic credentials are required.", challenge)
        name, password = creds
        addr = client_addr(request)
        wait = portal.throttle.retry_after(name, addr)
        if wait:
            portal.audit(name, "login", None, "refused", f"api: throttled after failed logins (from {addr})")
            raise PortalError(429, f"Too many failed logins: try again in {wait} s.", {"Retry-After": str(wait)})
        user = portal.check_password(name, password)
        if user is None:
            portal.throttle.failed(name, addr)
            portal.audit(name, "login", None, "refused", f"api: unknown user or wrong password (from {addr})")
            raise PortalError(401, "Unknown user or wrong password.", challenge)
        portal.throttle.succeeded(name)
        return Ctx(user)

    def need_view(ctx: Ctx, what: str) -> None:
        if not ctx.user.may("view"):
            raise PortalError(403, f"A {ROLE_LABELS[ctx.user.role].lower()} may not see {what}.")

    def need_month(month: str) -> None:
        if not store.exists(month):
            raise PortalError(404, f"No month {_short(month, 40)} has been computed.")

    def visible_partner(ctx: Ctx, partner_id: str):
        """The partner, or 404: unknown, or not one of a partner manager's."""
        if not ctx.sees(partner_id):
            raise PortalError(404, "No such partner.")
        ref = store.partner_refs().get(partner_id)
        if ref is None:
            raise PortalError(404, "No such partner.")
        return ref

    # --- months ----------------------------------------------------------------------------------

    def month_overview(ctx: Ctx, month: str, times: dict[str, str]) -> dict:
        s = store.state(month)
        approval = s.approval or {}
        payments = s.payments or {}
        out = {
            "month": month,
            "state": s.state,
            "run_at": store.run_time(month, times),
            "approved_by": approval.get("approved_by"),
            "approved_at": approval.get("approved_at"),
            "approval_note": approval.get("note") or "",
            "released_by": payments.get("released_by"),
            "released_at": payments.get("released_at"),
            "execution_date": payments.get("execution_date"),
            "awaiting_release": s.state == APPROVED,
        }
        if ctx.pm:
            balances = store.balances(month)
            out["partners"] = sorted(p for p in balances if ctx.sees(p))
            return out
        summary = store.summary(month)
        out["by_payout_currency"] = {
            cur: {k: v.get(k) for k in ("partners", "partners_paid", "gross", "withholding", "net_paid", "carried")}
            for cur, v in sorted(summary.get("by_payout_currency", {}).items())}
        out["exceptions"] = store.exceptions_count(month)
        out["validation"] = store.validation_status(month)
        out["restatements_pending"] = [r for r in summary.get("restatement", []) or [] if not r.get("posted")]
        return out

    def month_detail(ctx: Ctx, month: str) -> dict:
        out = month_overview(ctx, month, store.run_times())
        out["previous_month"] = store.previous(month)
        out["changes"] = store.changes(month, ctx.sees)
        statements = {p: rel for p, rel in store.statement_files(month).items() if ctx.sees(p)}
        listed = store.files(month)
        if ctx.pm:
            balances = store.balances(month)
            out["balances"] = [{"partner_id": p, **{k: v for k, v in balances[p].items() if k != "partner_id"}}
                               for p in out["partners"]]
            out["files"] = [{"path": "partner_balances.csv", "note": "your partners' rows only"}] if out["partners"] \
                else []
            out["files"] += [{"path": rel, "partner_id": p, "size": listed[rel].get("size"),
                              "sha256": listed[rel].get("sha256")} for p, rel in sorted(statements.items())]
            return out
        summary = store.summary(month)
        identities = summary.get("identities", [])
        out["control_totals"] = summary.get("by_currency", {})
        out["identities"] = {"checked": len(identities),
                             "failing": [i.get("name") for i in identities if not i.get("holds")]}
        approval = store.approval(month) or {}
        out["approval_warnings"] = approval.get("warnings", [])
        out["files"] = [{"path": rel, "size": e.get("size"), "sha256": e.get("sha256"),
                         **({"partner_id": pid} if (pid := _statement_partner(rel, statements)) else {})}
                        for rel, e in sorted(listed.items())]
        if ctx.user.may("approve") and store.state(month).payments:
            pay = store.payments(month) or {}
            out["payments"] = {"execution_date": pay.get("execution_date"), "released_by": pay.get("released_by"),
                               "released_at": pay.get("released_at"), "totals": pay.get("totals", {}),
                               "bank_details_changed": pay.get("bank_details_changed", []),
                               "files": [{"path": rel, "count": e.get("count"), "control_sum": e.get("control_sum"),
                                          "sha256": e.get("sha256")} for rel, e in store.payment_files(month).items()]}
        return out

    def _statement_partner(rel: str, statements: dict[str, str]) -> str | None:
        if not rel.startswith("statements/"):
            return None
        for pid, r in statements.items():
            if r == rel:
                return pid
        return None

    # --- downloads -------------------------------------------------------------------------------

    def download(ctx: Ctx, month: str, rel: str, inline_report: bool = False) -> Response:
        """A month file for this user, after every check; each answer (and refusal) is audited."""
        try:
            return _download(ctx, month, rel, inline_report)
        except PortalError as exc:
            portal.audit(ctx.user.name, "download", _audit_month(month), "refused",
                         f"{_short(rel)}: {exc.message}")
            raise

    def _download(ctx: Ctx, month: str, rel: str, inline_report: bool) -> Response:
        need_month(month)
        not_found = PortalError(404, f"{month} has no file {_short(rel, 120)}.")
        if rel == ZIP_NAME:
            return statements_zip(ctx, month)
        if rel.startswith("payments/"):
            if not ctx.user.may("approve"):
                raise PortalError(403, "Only an approver may download payment files.")
            if rel not in store.payment_files(month):
                raise not_found
        else:
            listed = store.files(month)
            if rel not in listed:
                raise not_found
            if ctx.pm:
                if rel.startswith("statements/"):
                    own = {r for p, r in store.statement_files(month).items() if ctx.sees(p)}
                    if rel not in own:
                        raise not_found  # another partner's statement does not exist for it
                elif rel in PM_FILES:
                    return filtered_balances(ctx, month)
                else:
                    raise PortalError(403, "A partner manager sees only its partners' statements and balances.")
        fh = open_month_file(portal.out_dir, month, rel)
        if fh is None:
            raise not_found
        size = os.fstat(fh.fileno()).st_size
        portal.audit(ctx.user.name, "download", month, "ok", rel + (" (viewed)" if inline_report else ""))
        base = rel.rsplit("/", 1)[-1]
        headers = {"Content-Disposition": _attachment(f"{month}_{base}", inline=inline_report),
                   "Content-Length": str(size)}
        if inline_report:
            headers["Content-Security-Policy"] = security.REPORT_CSP
        return StreamingResponse(_chunks(fh), media_type=_media_type(rel), headers=headers)

    def _chunks(fh) -> Iterator[bytes]:
        try:
            while block := fh.read(64 * 1024):
                yield block
        finally:
            fh.close()

    def filtered_balances(ctx: Ctx, month: str) -> Response:
        text = store.balances_text(month)
        if text is None:
            raise PortalError(404, f"{month} has no partner_balances.csv.")
        reader = csv.reader(io.StringIO(text, newline=""))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        header = next(reader, [])
        writer.writerow(header)
        idx = header.index("partner_id") if "partner_id" in header else 0
        kept = 0
        for row in reader:
            if row and ctx.sees(unsafe_text(row[idx])):
                writer.writerow(row)
                kept += 1
        portal.audit(ctx.user.name, "download", month, "ok", f"partner_balances.csv (rows of {kept} own partners)")
        return Response(out.getvalue().encode("utf-8"), media_type=_media_type("x.csv"),
                        headers={"Content-Disposition": _attachment(f"{month}_partner_balances.csv")})

    def statements_zip(ctx: Ctx, month: str) -> Response:
        statements = sorted((p, rel) for p, rel in store.statement_files(month).items() if ctx.sees(p))
        spool = tempfile.SpooledTemporaryFile(max_size=ZIP_SPOOL)
        y, m = int(month[:4]), int(month[5:7])
        with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for _, rel in statements:
                fh = open_month_file(portal.out_dir, month, rel)
                if fh is None:
                    continue
                info = zipfile.ZipInfo(f"{month}/{rel}", date_time=(y, m, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with fh, zf.open(info, "w") as dest:
                    while block := fh.read(1024 * 1024):
                        dest.write(block)
        size = spool.tell()
        spool.seek(0)
        portal.audit(ctx.user.name, "download", month, "ok", f"{ZIP_NAME} ({len(statements)} statements)")
        return StreamingResponse(_chunks(spool), media_type="application/zip",
                                 headers={"Content-Disposition": _attachment(f"{month}_statements.zip"),
                                          "Content-Length": str(size)})

    # --- actions ---------------------------------------------------------------------------------

    def act(ctx: Ctx, month: str, action: str, note: str, reason: str, execution_date: str) -> dict:
        """Approve, reopen or release through the engine; PortalError 403/404/409/500 when refused."""
        if not ctx.user.may("approve"):
            message = f"A {ROLE_LABELS[ctx.user.role].lower()} may not {action} a month: only an approver may."
            portal.audit(ctx.user.name, action, _audit_month(month), "refused", f"portal: {message}")
            raise PortalError(403, message)
        if not store.exists(month):
            message = f"{_short(month, 40)} has not been computed"
            portal.audit(ctx.user.name, action, _audit_month(month), "refused", f"portal: {message}")
            raise PortalError(404, message + ".")
        for label, text in (("note", note), ("reason", reason), ("execution_date", execution_date)):
            if len(text) > MAX_TEXT:
                portal.audit(ctx.user.name, action, month, "refused", f"portal: {label} longer than {MAX_TEXT}")
                raise PortalError(422, f"The {label} is longer than {MAX_TEXT} characters.")
        who = Who(ctx.user.name)
        with portal.action_lock:
            try:
                if action == "approve":
                    return engine.approve(portal.data_dir, portal.out_dir, month, who, note)
                if action == "reopen":
                    return engine.reopen(portal.out_dir, month, who, reason)
                return engine.release(portal.data_dir, portal.out_dir, month, who, execution_date or None)
            except engine.PayoutError as exc:  # already in the audit log
                raise PortalError(409, str(exc)) from None
            except Exception as exc:  # noqa: BLE001 - shown as one line, logged in full
                log.exception("%s %s failed", action, month)
                first = str(exc).splitlines()[0] if str(exc) else ""
                message = f"{action} {month} failed: {type(exc).__name__}: {first}"
                portal.audit(ctx.user.name, action, month, "refused", message)
                raise PortalError(500, message) from None

    def action_done(action: str, month: str, result: dict) -> str:
        if action == "approve":
            return f"{month} approved by {result.get('approved_by')}: its files are sealed and read-only."
        if action == "reopen":
            return f"{month} reopened: it is a draft again."
        counts = ", ".join(f"{name} ({e.get('count')})" for name, e in sorted(result.get("files", {}).items()))
        return f"{month} released: payment files written for execution on {result.get('execution_date')}: {counts}."

    # --- pages -----------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def home(request: Request):
        page_ctx(request)
        return RedirectResponse("/months", status_code=303)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/", bye: int = 0):
        if portal.sessions.get(request.cookies.get(SESSION_COOKIE), touch=False) is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        return login_page(request, next, message="You are logged out." if bye else "", kind="ok")

    def login_page(request: Request, next: str, message: str = "", kind: str = "error", status: int = 200,
                   username: str = "") -> HTMLResponse:
        token, cookie = portal.login_tokens.new()
        response = render(request, "login.html", None, status=status, login_csrf=token, next=_safe_next(next),
                          message=message, kind=kind, username=username)
        _cookie(response, LOGIN_COOKIE, cookie, max_age=security.LOGIN_FORM_SECONDS)
        return response

    @app.post("/login", response_class=HTMLResponse)
    def login(request: Request, username: str = Form(""), password: str = Form(""), csrf_token: str = Form(""),
              next: str = Form("/")):
        addr = client_addr(request)
        name = username.strip()
        if not portal.login_tokens.check(request.cookies.get(LOGIN_COOKIE), csrf_token):
            portal.audit(name, "login", None, "refused", f"portal: CSRF token missing or wrong (from {addr})")
            return login_page(request, next, "The login form expired or did not come from this portal: "
                                             "please try again.", status=403, username=name)
        wait = portal.throttle.retry_after(name, addr)
        if wait:
            portal.audit(name, "login", None, "refused", f"portal: throttled after failed logins (from {addr})")
            minutes = max(1, round(wait / 60))
            response = login_page(request, next, f"Too many failed logins: try again in about {minutes} "
                                                 f"minute{'s' if minutes != 1 else ''}.", status=429, username=name)
            response.headers["Retry-After"] = str(wait)
            return response
        user = portal.check_password(name, password)
        if user is None:
            portal.throttle.failed(name, addr)
            portal.audit(name, "login", None, "refused", f"portal: unknown user or wrong password (from {addr})")
            return login_page(request, next, "Wrong user name or password.", status=401, username=name)
        portal.throttle.succeeded(name)
        old = portal.sessions.get(request.cookies.get(SESSION_COOKIE), touch=False)
        if old is not None:
            portal.sessions.drop(old)
        _, cookie = portal.sessions.create(user.name)
        portal.audit(user.name, "login", None, "ok", f"portal: {user.role} (from {addr})")
        response = RedirectResponse(_safe_next(next), status_code=303)
        _cookie(response, SESSION_COOKIE, cookie)
        response.delete_cookie(LOGIN_COOKIE, path="/", secure=portal.secure_cookies, httponly=True,
                               samesite="strict")
        return response

    @app.post("/logout")
    def logout(request: Request, csrf_token: str = Form("")):
        ctx = page_ctx(request)
        if not security.same_token(ctx.session.csrf, csrf_token):
            raise PortalError(403, "The form did not carry this session's CSRF token: reload the page and try again.")
        portal.sessions.drop(ctx.session)
        response = RedirectResponse("/login?bye=1", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=portal.secure_cookies, httponly=True,
                               samesite="strict")
        return response

    @app.get("/months", response_class=HTMLResponse)
    def months_page(request: Request):
        ctx = page_ctx(request)
        times = store.run_times()
        rows = [month_overview(ctx, m, times) for m in reversed(store.months())]
        charts = [] if ctx.pm else net_paid_charts(list(reversed(rows)))
        return render(request, "months.html", ctx, rows=rows, charts=bool(charts), chart_specs=charts, nav="months")

    def net_paid_charts(rows: list[dict]) -> list[dict]:
        """One chart per payout currency: net paid per month (amounts of different currencies are never
        drawn on one axis)."""
        currencies = sorted({c for r in rows for c in r.get("by_payout_currency", {})})
        out = []
        for cur in currencies:
            values = []
            for r in rows:
                v = to_decimal((r["by_payout_currency"].get(cur) or {}).get("net_paid"))
                values.append(float(v) if v is not None else 0.0)
            digits = _digits(rows, cur)
            out.append({"currency": cur, "spec": json.dumps({
                "labels": [r["month"] for r in rows], "currency": cur, "digits": digits,
                "series": [{"label": f"Net paid ({cur})", "type": "bar", "data": values}]})})
        return out

    def _digits(rows: list[dict], cur: str) -> int:
        for r in rows:
            v = (r.get("by_payout_currency", {}).get(cur) or {}).get("net_paid")
            if v:
                return len(v.partition(".")[2])
        return 2

    @app.get("/months/{month}", response_class=HTMLResponse)
    def month_page(request: Request, month: str):
        ctx = page_ctx(request)
        need_month(month)
        detail = month_detail(ctx, month)
        refs = store.partner_refs()
        names = {pid: ref.name for pid, ref in refs.items()}
        main_files = [f for f in detail["files"] if not f["path"].startswith("statements/")]
        statement_files = [f for f in detail["files"] if f["path"].startswith("statements/")]
        return render(request, "month.html", ctx, m=detail, names=names, main_files=main_files,
                      statement_files=statement_files, file_labels=FILE_LABELS, nav="months",
                      can_act=ctx.user.may("approve"), DRAFT=DRAFT, APPROVED=APPROVED, RELEASED=RELEASED)

    @app.get("/months/{month}/report")
    def report_page(request: Request, month: str):
        ctx = page_ctx(request)
        return download(ctx, month, "validation/report.html", inline_report=True)

    @app.get("/months/{month}/files/{rel:path}")
    def file_page(request: Request, month: str, rel: str):
        ctx = page_ctx(request)
        return download(ctx, month, rel)

    def _page_action(request: Request, month: str, action: str, csrf_token: str, note: str, reason: str,
                     execution_date: str) -> Response:
        ctx = page_ctx(request)
        if not security.same_token(ctx.session.csrf, csrf_token):
            portal.audit(ctx.user.name, action, _audit_month(month), "refused",
                         "portal: CSRF token missing or wrong")
            raise PortalError(403, "The form did not carry this session's CSRF token: reload the page and try again.")
        try:
            result = act(ctx, month, action, note.strip(), reason.strip(), execution_date.strip())
        except PortalError as exc:
            if exc.status in (403, 404):
                raise
            ctx.session.flash.append(("error", f"{action.capitalize()} refused: {exc.message}"))
        else:
            ctx.session.flash.append(("ok", action_done(action, month, result)))
        return RedirectResponse(f"/months/{month}", status_code=303)

    @app.post("/months/{month}/approve")
    def approve_page(request: Request, month: str, csrf_token: str = Form(""), note: str = Form("")):
        return _page_action(request, month, "approve", csrf_token, note, "", "")

    @app.post("/months/{month}/reopen")
    def reopen_page(request: Request, month: str, csrf_token: str = Form(""), reason: str = Form("")):
        return _page_action(request, month, "reopen", csrf_token, "", reason, "")

    @app.post("/months/{month}/release")
    def release_page(request: Request, month: str, csrf_token: str = Form(""), execution_date: str = Form("")):
        return _page_action(request, month, "release", csrf_token, "", "", execution_date)

    @app.get("/partners", response_class=HTMLResponse)
    def partners_page(request: Request, q: str = ""):
        ctx = page_ctx(request)
        results, total = search_partners(ctx, q)
        return render(request, "partners.html", ctx, q=q, results=results, total=total, limit=SEARCH_LIMIT,
                      nav="partners")

    def search_partners(ctx: Ctx, q: str) -> tuple[list[dict], int]:
        needle = q.strip().casefold()
        refs = store.partner_refs()
        months = store.months()
        latest = {}
        for m in months:
            for pid, row in store.balances(m).items():
                latest[pid] = (m, row)
        found = []
        for pid in sorted(refs):
            if not ctx.sees(pid):
                continue
            ref = refs[pid]
            if needle and needle not in pid.casefold() and needle not in ref.name.casefold():
                continue
            m, row = latest.get(pid, (None, {}))
            found.append({"partner_id": pid, "name": ref.name, "status": ref.status,
                          "payout_currency": row.get("payout_currency") or ref.payout_currency,
                          "latest_month": m, "latest_status": row.get("status", ""),
                          "closing_balance": row.get("closing_balance", "")})
        return found[:SEARCH_LIMIT], len(found)

    @app.get("/partners/{partner_id:path}", response_class=HTMLResponse)
    def partner_page(request: Request, partner_id: str, month: str = ""):
        ctx = page_ctx(request)
        ref = visible_partner(ctx, partner_id)
        history = store.partner_history(partner_id)
        statement_months = [h["month"] for h in history if store.statement_rel(h["month"], partner_id)]
        if month and month not in statement_months:
            raise PortalError(404, f"{partner_id} has no statement for {_short(month, 40)}.")
        chosen = month or (statement_months[-1] if statement_months else "")
        columns, rows = (store.statement(chosen, partner_id) or ([], [])) if chosen else ([], [])
        charts = balance_charts(history)
        return render(request, "partner.html", ctx, ref=ref, history=history, statement_months=statement_months,
                      chosen=chosen, columns=columns, rows=rows[:STATEMENT_PAGE_ROWS], total_rows=len(rows),
                      statement_rel=store.statement_rel(chosen, partner_id) if chosen else None,
                      charts=bool(charts), chart_specs=charts, nav="partners")

    def balance_charts(history: list[dict]) -> list[dict]:
        out = []
        for cur in sorted({h["payout_currency"] for h in history}):
            rows = [h for h in history if h["payout_currency"] == cur]
            digits = len((rows[0].get("closing_balance") or "").partition(".")[2]) if rows else 2

            def series(key: str) -> list[float]:
                return [float(to_decimal(r.get(key)) or 0) for r in rows]

            out.append({"currency": cur, "spec": json.dumps({
                "labels": [r["month"] for r in rows], "currency": cur, "digits": digits,
                "series": [{"label": f"Net paid ({cur})", "type": "bar", "data": series("net_paid")},
                           {"label": f"Closing balance ({cur})", "type": "line", "data": series("closing_balance")}]})})
        return out

    # --- the JSON API ----------------------------------------------------------------------------

    @app.get("/api/months")
    def api_months(request: Request):
        ctx = api_ctx(request)
        times = store.run_times()
        return {"months": [month_overview(ctx, m, times) for m in store.months()]}

    @app.get("/api/months/{month}")
    def api_month(request: Request, month: str):
        ctx = api_ctx(request)
        need_month(month)
        return month_detail(ctx, month)

    @app.get("/api/months/{month}/files/{rel:path}")
    def api_file(request: Request, month: str, rel: str):
        ctx = api_ctx(request)
        return download(ctx, month, rel)

    async def _json_body(request: Request) -> dict:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise PortalError(415, "Send a JSON body with Content-Type: application/json.")
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise PortalError(400, "The body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise PortalError(400, "The body must be a JSON object.")
        for key in ("note", "reason", "execution_date"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise PortalError(400, f"{key} must be a string.")
        return body

    @app.post("/api/months/{month}/{action}")
    async def api_action(request: Request, month: str, action: str):
        from starlette.concurrency import run_in_threadpool

        ctx = await run_in_threadpool(api_ctx, request)
        if action not in ACTIONS:
            raise PortalError(404, "Not found.")
        if ctx.user.may("approve"):
            body = await _json_body(request)
        else:
            body = {}
        result = await run_in_threadpool(act, ctx, month, action, (body.get("note") or "").strip(),
                                         (body.get("reason") or "").strip(),
                                         (body.get("execution_date") or "").strip())
        return JSONResponse(result)

    @app.get("/api/partners/{partner_id:path}/statements/{month}")
    def api_statement(request: Request, partner_id: str, month: str):
        ctx = api_ctx(request)
        visible_partner(ctx, partner_id)
        need_month(month)
        found = store.statement(month, partner_id)
        if found is None:
            raise PortalError(404, f"{partner_id} has no statement for {month}.")
        columns, rows = found
        portal.audit(ctx.user.name, "download", month, "ok",
                     f"statements/{partner_id} (api, {len(rows)} rows)")
        return {"partner_id": partner_id, "month": month, "columns": columns, "rows": rows}

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def api_unknown(request: Request, rest: str):
        api_ctx(request)
        raise PortalError(404, "Not found.")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


class _PortalApp(FastAPI):
    """FastAPI with the security headers outside everything, so that even an unexpected error's 500
    answer carries them."""

    def build_middleware_stack(self):
        return security.SecurityHeaders(super().build_middleware_stack(), hsts=self.state.portal.secure_cookies)


def _safe_next(target: str | None) -> str:
    """Only a path of this site: `/...`, never `//host` or a scheme."""
    if not target or not target.startswith("/") or target.startswith("//") or target.startswith("/\\") \
            or target.startswith("/login") or any(ch in target for ch in "\r\n\t"):
        return "/months"
    return target


def server_options() -> dict:
    """uvicorn's settings that bear on security. X-Forwarded-For is trusted only from the proxies
    FORWARDED_ALLOW_IPS names: the portal binds 127.0.0.1, so uvicorn's default trust of 127.0.0.1
    would let every direct client choose the address the login throttle and the audit log see."""
    proxies = os.environ.get("FORWARDED_ALLOW_IPS", "").strip()
    return {"proxy_headers": bool(proxies), "forwarded_allow_ips": proxies or None, "server_header": False}


def serve(out_dir: Path, users_file: Path, data_dir: Path, host: str = "127.0.0.1", port: int = 8765, *,
          secure_cookies: bool | None = None, secret_key: bytes | None = None) -> None:
    """Run the portal with uvicorn (one process: the sessions and the login throttle live in it).

    `secure_cookies` defaults to the environment's PAYOUTS_PORTAL_SECURE_COOKIES=1 (set it behind a TLS
    proxy); `secret_key` to PAYOUTS_PORTAL_SECRET (else random: everybody logs in again after a
    restart). An engine command waits for the output root at most PAYOUTS_LOCK_WAIT seconds (30 here
    unless set), so that an approval during a run is refused with a message instead of hanging."""
    import uvicorn

    os.environ.setdefault("PAYOUTS_LOCK_WAIT", "30")
    if secure_cookies is None:
        secure_cookies = os.environ.get("PAYOUTS_PORTAL_SECURE_COOKIES", "") in ("1", "true", "yes")
    if secret_key is None and os.environ.get("PAYOUTS_PORTAL_SECRET"):
        secret_key = os.environ["PAYOUTS_PORTAL_SECRET"].encode("utf-8")
    users_file = Path(users_file)
    if not users_file.exists():
        log.warning("users file %s does not exist: nobody can log in (payouts users add ...)", users_file)
    if host not in ("127.0.0.1", "localhost", "::1") and not secure_cookies:
        log.warning("serving on %s without secure cookies: put a TLS proxy in front and set "
                    "PAYOUTS_PORTAL_SECURE_COOKIES=1", host)
    app = create_app(Path(out_dir), users_file, Path(data_dir), secret_key=secret_key, secure_cookies=secure_cookies)
    uvicorn.run(app, host=host, port=port, **server_options(), date_header=True,
                log_level="info", workers=1)
