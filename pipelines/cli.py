"""`payouts`: the command line of SPEC section 6.

    payouts run --month YYYY-MM [--data DIR] [--out DIR] [--restate]
    payouts sample [--data DIR] [--months N] [--scale N]
    payouts approve --month YYYY-MM --by NAME [--note TEXT] [--data DIR] [--out DIR] [--users FILE --password-stdin]
    payouts reopen  --month YYYY-MM --by NAME --reason TEXT [--out DIR] [--users FILE --password-stdin]
    payouts discard --month YYYY-MM --by NAME [--out DIR] [--users FILE --password-stdin]
    payouts release --month YYYY-MM --by NAME [--execution-date YYYY-MM-DD] [--data DIR] [--out DIR] [...]
    payouts status [--out DIR]
    payouts verify [--month YYYY-MM] [--out DIR]
    payouts serve [--out DIR] [--data DIR] [--users FILE] [--host H] [--port P]
    payouts users add NAME --role ROLE [--partners ID,...] [--password-stdin] [--users FILE]
    payouts users remove NAME [--users FILE]

Every command exits 0 on success and 1 with a one-line reason on standard error when it refuses
or fails, leaving no partial output.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys

DEFAULT_USERS = "users.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payouts", description="Partner payouts: one billing month at a time.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step's counts and totals")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="compute one month (a draft)")
    run.add_argument("--month", required=True, help="billing month, YYYY-MM")
    run.add_argument("--data", default="data", help="input root (default: data/)")
    run.add_argument("--out", default="out", help="output root (default: out/)")
    run.add_argument("--restate", action="store_true",
                     help="post the locked months' restatements as movements of this month (docs/restatement.md)")

    sample = sub.add_parser("sample", help="write a realistic demo input tree")
    sample.add_argument("--data", default="data", help="where to write it (default: data/)")
    sample.add_argument("--months", type=int, default=3, help="consecutive months from 2025-01 (default: 3)")
    sample.add_argument("--scale", type=int, default=2000, help="subscription lines per month (default: 2000)")
    sample.add_argument("--seed", type=int, default=7)

    def who(p: argparse.ArgumentParser) -> None:
        p.add_argument("--month", required=True, help="billing month, YYYY-MM")
        p.add_argument("--by", required=True, help="who acts (an approver of --users, when given)")
        p.add_argument("--out", default="out", help="output root (default: out/)")
        p.add_argument("--users", help="users file: --by must be an approver of it, password on standard input")
        p.add_argument("--password-stdin", action="store_true", help="read --by's password from standard input")

    approve = sub.add_parser("approve", help="approve the oldest draft month: lock it")
    who(approve)
    approve.add_argument("--note", default="", help="a note kept in approval.json")
    approve.add_argument("--data", default="data", help="input root, to check the month's exports (default: data/)")
    reopen = sub.add_parser("reopen", help="turn an approved month back into a draft")
    who(reopen)
    reopen.add_argument("--reason", required=True, help="why it is reopened (kept in the audit log)")
    discard = sub.add_parser("discard", help="remove the latest month while it is a draft")
    who(discard)
    release = sub.add_parser("release", help="write the payment files of the oldest approved month")
    who(release)
    release.add_argument("--execution-date", help="YYYY-MM-DD (default: the next banking day)")
    release.add_argument("--data", default="data", help="input root: today's partners.csv and program.yaml")

    status = sub.add_parser("status", help="every month: state, who, when, totals")
    status.add_argument("--out", default="out", help="output root (default: out/)")
    verify = sub.add_parser("verify", help="check month files against their manifests, and the audit chain")
    verify.add_argument("--month", help="one month (default: every month)")
    verify.add_argument("--out", default="out", help="output root (default: out/)")

    serve = sub.add_parser("serve", help="the finance portal (docs/portal.md)")
    serve.add_argument("--out", default="out", help="output root (default: out/)")
    serve.add_argument("--data", default="data", help="input root that approve and release read (default: data/)")
    serve.add_argument("--users", default=DEFAULT_USERS, help=f"users file (default: {DEFAULT_USERS})")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default: 127.0.0.1; put a TLS proxy in front otherwise)")
    serve.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    serve.add_argument("--secure-cookies", action="store_true",
                       help="Secure cookies and HSTS, behind a TLS proxy (or PAYOUTS_PORTAL_SECURE_COOKIES=1)")

    users = sub.add_parser("users", help="manage the users file of the portal")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="add a user, or change its role, partners or password")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=("viewer", "approver", "partner_manager"))
    add.add_argument("--partners", default="", help="for a partner_manager: the partner ids it may see, comma-separated")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--users", default=DEFAULT_USERS, help=f"users file (default: {DEFAULT_USERS})")
    add.add_argument("--out", default="out", help="output root whose audit log records the change (default: out/)")
    remove = users_sub.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    remove.add_argument("--users", default=DEFAULT_USERS, help=f"users file (default: {DEFAULT_USERS})")
    remove.add_argument("--out", default="out", help="output root whose audit log records the change (default: out/)")
    return parser


def _password(args: argparse.Namespace, prompt: str) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if getattr(args, "users", None) is None:
        return None
    return getpass.getpass(prompt)


def _print(obj: object) -> None:
    print(json.dumps(obj, sort_keys=True, indent=None, default=str))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "sample":
        from pipelines.demo.sample_data import write_sample

        _print(write_sample(args.data, months=args.months, scale=args.scale, seed=args.seed))
        return 0

    if args.command == "serve":
        from pathlib import Path

        from pipelines.portal import serve

        serve(Path(args.out), Path(args.users), Path(args.data), host=args.host, port=args.port,
              secure_cookies=True if args.secure_cookies else None)
        return 0

    from pipelines import engine
    from pipelines.close.actions import Who

    try:
        if args.command == "run":
            display = None
            if sys.stderr.isatty() and not args.verbose:
                from pipelines.progress import StepDisplay

                display = StepDisplay(args.month)
            try:
                result = engine.run_month(args.data, args.out, args.month, restate=args.restate, progress=display)
            finally:
                if display is not None:
                    display.close()
            _print({"month": args.month, "out": result["publish"]["month_dir"],
                    "net_paid": result["publish"]["net_paid"]})
        elif args.command in ("approve", "reopen", "discard", "release"):
            who = Who(args.by, args.users, _password(args, f"password of {args.by}: "))
            if args.command == "approve":
                result = engine.approve(args.data, args.out, args.month, who, args.note)
                for warning in result.get("warnings", []):
                    print(f"payouts: warning: {warning}", file=sys.stderr)
            elif args.command == "release":
                result = engine.release(args.data, args.out, args.month, who, args.execution_date)
                for pid in result["bank_details_changed"]:
                    print(f"payouts: {pid}'s bank details changed since {args.month} was computed: paid by hand "
                          "(manual_payments.csv)", file=sys.stderr)
            elif args.command == "reopen":
                result = engine.reopen(args.out, args.month, who, args.reason)
            else:
                result = engine.discard(args.out, args.month, who)
            _print(result)
        elif args.command == "status":
            for row in engine.status(args.out):
                flag = "  <- approved, not released" if row["awaiting_release"] else ""
                who_when = ""
                if row["approved_by"]:
                    who_when = f"  approved by {row['approved_by']} at {row['approved_at']}"
                if row["released_by"]:
                    who_when += f", released by {row['released_by']} at {row['released_at']}"
                paid = ", ".join(f"{c} {v}" for c, v in row["net_paid"].items())
                print(f"{row['month']}  {row['state']:<8}  net paid {paid or '-'}{who_when}{flag}")
        elif args.command == "verify":
            result = engine.verify(args.out, args.month)
            for problem in result["problems"]:
                print(f"payouts: {problem}", file=sys.stderr)
            if result["audit_broken_at"] is not None:
                print(f"payouts: audit.jsonl: line {result['audit_broken_at']} breaks the chain: "
                      f"{result['audit_reason']}", file=sys.stderr)
            print(f"months checked: {', '.join(result['months']) or 'none'}; audit lines: {result['audit_lines']}; "
                  f"last line sha256: {result['audit_last_sha256']}")
            return 0 if result["ok"] else 1
        elif args.command == "users":
            return _users(args)
    except engine.PayoutError as exc:
        print(f"payouts: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # an unexpected failure: still one line, still nothing published
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"payouts: {getattr(args, 'month', '') or args.command} failed: {type(exc).__name__}: {first}",
              file=sys.stderr)
        logging.getLogger(__name__).debug("failure", exc_info=True)
        return 1
    return 0


def _users(args: argparse.Namespace) -> int:
    from pipelines.close import audit, users

    actor = audit.os_user()
    try:
        if args.users_command == "add":
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            else:
                password = getpass.getpass(f"password for {args.name}: ")
                if getpass.getpass("again: ") != password:
                    raise users.UsersError("the two passwords differ")
            partners = tuple(p.strip() for p in args.partners.split(",") if p.strip())
            user = users.add(args.users, args.name, args.role, password, partners)
            audit.append(args.out, actor, "user_add", None, "ok", f"{user.name}: {user.role}"
                         + (f" of {', '.join(user.partners)}" if user.partners else ""))
            _print({"user": user.name, "role": user.role, "partners": list(user.partners)})
        else:
            users.remove(args.users, args.name)
            audit.append(args.out, actor, "user_remove", None, "ok", args.name)
            _print({"removed": args.name})
    except users.UsersError as exc:
        audit.append(args.out, actor, f"user_{args.users_command}", None, "refused", str(exc))
        print(f"payouts: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
