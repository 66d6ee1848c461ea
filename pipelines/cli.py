"""`payouts`: the command line of SPEC section 6.

    payouts run --month YYYY-MM [--data DIR] [--out DIR]
    payouts sample [--data DIR] [--months N] [--scale N]

`run` exits 0 when the month was computed and written (exceptions included), and 1 with a one-line
reason on standard error when it was refused or failed, leaving no partial output.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="payouts", description="Partner payouts: one billing month at a time.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step's counts and totals")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="compute one month")
    run.add_argument("--month", required=True, help="billing month, YYYY-MM")
    run.add_argument("--data", default="data", help="input root (default: data/)")
    run.add_argument("--out", default="out", help="output root (default: out/)")
    sample = sub.add_parser("sample", help="write a realistic demo input tree")
    sample.add_argument("--data", default="data", help="where to write it (default: data/)")
    sample.add_argument("--months", type=int, default=3, help="consecutive months from 2025-01 (default: 3)")
    sample.add_argument("--scale", type=int, default=2000, help="subscription lines per month (default: 2000)")
    sample.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "run":
        from pipelines.engine import PayoutError, run_month

        try:
            result = run_month(args.data, args.out, args.month)
        except PayoutError as exc:
            print(f"payouts: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # an unexpected failure: still one line, still nothing published
            print(f"payouts: {args.month} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                  file=sys.stderr)
            logging.getLogger(__name__).debug("failure", exc_info=True)
            return 1
        print(json.dumps({"month": args.month, "out": result["publish"]["month_dir"],
                          "net_paid": result["publish"]["net_paid"]}, sort_keys=True))
        return 0
    from pipelines.demo.sample_data import write_sample

    print(json.dumps(write_sample(args.data, months=args.months, scale=args.scale, seed=args.seed), sort_keys=True,
                     default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
