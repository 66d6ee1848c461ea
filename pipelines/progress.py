"""`payouts run` on a terminal: one line per step as it goes, with its counts and time (rich)."""

from __future__ import annotations

from rich.console import Console

SAYS = {
    "prepare": "check program.yaml, the files and the month chain",
    "ingest": "read and type-check every input file",
    "validate_inputs": "input gate",
    "compute": "payout rules, files and ledger rows",
    "validate_results": "result gate",
    "publish": "publish the month with its ledger update",
}


def _counts(step: str, result: dict) -> str:
    if step == "ingest":
        rows = sum(result.get("rows_read", {}).values())
        return f"{rows:,} rows read, {result.get('quarantined_at_ingest', 0):,} quarantined"
    if step == "validate_inputs":
        return f"{result.get('suites', 0)} suites, {result.get('warnings', 0)} warnings"
    if step == "compute":
        return (f"{result.get('partners', 0):,} partners, {result.get('paid', 0):,} paid, "
                f"{result.get('statements', 0):,} statements, {result.get('exceptions', 0):,} exceptions")
    if step == "validate_results":
        return f"{result.get('suites', 0)} suites, {result.get('status', '')}"
    if step == "publish":
        return ", ".join(f"{c} {v}" for c, v in sorted(result.get("net_paid", {}).items())) or "nothing paid"
    return ""


class StepDisplay:
    """A spinner on the running step; each finished step stays as one line."""

    def __init__(self, month: str):
        self.console = Console(stderr=True, highlight=False)
        self.month = month
        self.status = None

    def __call__(self, step: str, result: dict | None) -> None:
        if result is None:
            self.status = self.console.status(f"{self.month} {step}: {SAYS.get(step, '')}")
            self.status.start()
            return
        self.close()
        self.console.print(f"[green]✓[/] {self.month} {step:<16} {result.get('seconds', 0):6.1f} s  "
                           f"{_counts(step, result)}")

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
