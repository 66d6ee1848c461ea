"""Hand-built frames that pass their suite, and the params they need (values computed by hand)."""

import polars as pl

MONTH = "2025-03"

PARAMS = {
    "month": MONTH,
    "max_quarantine_bp": 500,     # validation.max_quarantine_pct 5
    "max_row_change_bp": 5000,    # validation.max_row_change_pct 50
    "max_fx_move_bp": 1000,       # validation.max_fx_move_pct 10
    "max_unattributed_bp": 5000,  # validation.max_unattributed_pct 50
    "partners_paid": 3,
}


def input_files() -> pl.DataFrame:
    # 2 of 200 rows quarantined: 2 * 10000 // 200 = 100 bp; 200 rows against 180 before:
    # 20 * 10000 // 180 = 1111 bp; project_billing has no earlier month (previous_rows null)
    return pl.DataFrame({
        "file": ["subscription_billing", "project_billing"],
        "label": ["exports/2025-03/subscription_billing.csv", "exports/2025-03/project_billing.csv"],
        "rows_read": [200, 40],
        "rows_quarantined": [2, 0],
        "quarantine_bp": [100, 0],
        "previous_rows": [180, None],
        "change_bp": [1111, None],
    })


def new_values() -> pl.DataFrame:
    return pl.DataFrame({
        "kind": ["currency", "currency", "product_family"],
        "value": ["USD", "EUR", "platform"],
        "seen_before": [True, True, True],
        "first_month": [False, False, False],
    })


def fx_moves() -> pl.DataFrame:
    # EUR 1.0700 -> 1.0800: 0.01 * 10000 // 1.07 = 93 bp; SEK has no rate for February
    return pl.DataFrame({
        "currency": ["EUR", "SEK", "JPY"],
        "rate": ["1.0800", "0.0950", "0.0067"],
        "previous_rate": ["1.0700", None, "0.0066"],
        "move_bp": [93, None, 151],  # JPY: 0.0001 * 10000 // 0.0066 = 151
    })


def remittance() -> pl.DataFrame:
    return pl.DataFrame({
        "payment_reference": ["PO-202503-P1", "PO-202503-P2", "PO-202503-P3"],
        "billing_month": [MONTH, MONTH, MONTH],
        "partner_id": ["P1", "P2", "P3"],
        "partner_name": ["Alpha", "Beta", "Gamma"],
        "payout_currency": ["USD", "USD", "JPY"],
        "gross_amount": ["100.00", "250.50", "12000"],
        "withholding_amount": ["0.00", "25.05", "0"],
        "net_amount": ["100.00", "225.45", "12000"],
        "payout_method": ["bank_transfer", "paypal", "bank_transfer"],
        "account_last4": ["3000", None, "1234"],
        "expected_reference": ["PO-202503-P1", "PO-202503-P2", "PO-202503-P3"],
        "gross_minor": [10000, 25050, 12000],
        "amount_digits_ok": [True, True, True],
        "paid_in_balances": [True, True, True],
    })


BALANCE_COLUMNS = ["partner_id", "payout_currency", "opening_balance", "earnings", "clawbacks", "referral_fees",
                   "fees", "adjustments", "pending", "gross_paid", "withholding", "net_paid", "closing_balance",
                   "status"]


def partner_balances() -> pl.DataFrame:
    # P1 paid 100.00 (opened at last month's 10.00); P2 new, 40.00 below the minimum; P3 carries -50.00 - 20.00
    z = "0.00"
    rows = [  # opening, earnings, clawbacks, referral_fees, fees, adjustments, pending, gross, withholding, net
        ["P1", "USD", "10.00", "90.00", z, z, z, z, z, "100.00", z, "100.00", z, "paid"],
        ["P2", "USD", z, "40.00", z, z, z, z, z, z, z, z, "40.00", "below_minimum"],
        ["P3", "EUR", "-50.00", z, z, z, "20.00", z, z, z, z, z, "-70.00", "negative_balance"],
    ]
    frame = pl.DataFrame(rows, schema=BALANCE_COLUMNS, orient="row")
    return frame.with_columns(
        pl.Series("closing_minor", [0, 4000, -7000]),
        pl.Series("gross_minor", [10000, 0, 0]),
        pl.Series("opening_minor", [1000, 0, -5000]),
        pl.Series("previous_closing_minor", [1000, None, -5000]),
        pl.Series("amount_digits_ok", [True, True, True]),
    )


def carried_balances() -> pl.DataFrame:
    return pl.DataFrame({"partner_id": ["P1", "P3"], "present": [True, True]})


def payout_totals() -> pl.DataFrame:
    cols = {"currency": ["EUR", "USD"]}
    for x, values in (("gross", [5000, 35050]), ("withholding", [500, 2505]), ("net", [4500, 32545])):
        for source in ("remittance", "balances", "summary", "ledger"):
            cols[f"{x}_{source}"] = list(values)
    return pl.DataFrame(cols)


def currency_totals() -> pl.DataFrame:
    return pl.DataFrame({
        "currency": ["EUR", "USD"],
        "billed_summary": [50000, 100000], "billed_lines": [50000, 100000],
        "partner_share_summary": [12500, 25000], "partner_share_credits": [12500, 25000],
        "clawed_back_summary": [0, -1000], "clawed_back_clawbacks": [0, -1000],
    })


def unattributed_share() -> pl.DataFrame:
    # USD: 20000 * 10000 // 100000 = 2000 bp; EUR: nothing billed, 0
    return pl.DataFrame({"currency": ["USD", "EUR"], "billed_minor": [100000, 0], "unattributed_minor": [20000, 0],
                         "unattributed_bp": [2000, 0]})


FRAMES = {
    "input_files": input_files, "new_values": new_values, "fx_moves": fx_moves, "remittance": remittance,
    "partner_balances": partner_balances, "carried_balances": carried_balances, "payout_totals": payout_totals,
    "currency_totals": currency_totals, "unattributed_share": unattributed_share,
}


def all_frames() -> dict[str, pl.DataFrame]:
    return {name: build() for name, build in FRAMES.items()}


def with_value(frame: pl.DataFrame, column: str, row: int, value) -> pl.DataFrame:
    """The frame with one cell changed."""
    values = frame.get_column(column).to_list()
    values[row] = value
    return frame.with_columns(pl.Series(column, values))
