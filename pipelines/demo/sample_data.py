"""Write a realistic, deterministic demo input tree for the partner payouts pipeline.

``write_sample(DIR)`` lays out the tree of SPEC section 1::

    DIR/reference/program.yaml, partners.csv, partner_levels.csv, attributions.csv, fx_rates.csv
    DIR/exports/YYYY-MM/subscription_billing.csv, project_billing.csv,
                        referral_events.csv, partner_fees.csv

Everything is a pure function of ``(months, scale, seed, first_month)``: two runs write
byte-identical files. Reference data, projects, referral events and fees are small and are written
from Python with a seeded ``random.Random``. The subscription file holds exactly ``scale`` valid
lines per month plus a constant handful of deliberately bad rows; it is produced by DuckDB from
``range(scale)`` with hash-based pseudo-randomness (every field is a formula of the month and the
row index, so a refund can name its original charge by formula) and streamed to disk in Arrow
batches, so memory stays flat whatever the scale.

See ``docs/sample-data.md`` for what the data contains and which rows are bad on purpose.
"""

from __future__ import annotations

import csv
import io
import random
import re
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from pipelines.core.money import format_amount, minor_units
from pipelines.core.months import BillingMonth, add_months

__all__ = ["write_sample", "HEADERS", "BAD_ROW_KINDS"]

# --------------------------------------------------------------------------------------------
# File layout (column order as SPEC section 1 lists the columns)
# --------------------------------------------------------------------------------------------
HEADERS: dict[str, list[str]] = {
    "partners": ["partner_id", "name", "payout_currency", "payout_method", "account_ref",
                 "country", "withholding_tax_pct", "status", "min_payout", "bank_code", "account_type"],
    "adjustments": ["adjustment_id", "partner_id", "currency", "amount", "reason", "entered_by"],
    "partner_levels": ["partner_id", "level", "effective_from"],
    "attributions": ["claim_id", "customer_id", "partner_id", "source", "engagement_type",
                     "credit_pct", "valid_from", "valid_to", "status"],
    "fx_rates": ["rate_date", "currency", "rate"],
    "subscription_billing": ["line_id", "invoice_id", "invoice_date", "customer_id",
                             "subscription_id", "subscription_start", "product_family",
                             "currency", "amount", "line_type", "refers_to_line_id"],
    "project_billing": ["line_id", "invoice_id", "invoice_date", "customer_id", "currency",
                        "amount", "line_type", "refers_to_line_id", "project_id",
                        "engagement_type", "partner_id", "contract_value",
                        "partner_contribution_pct"],
    "referral_events": ["event_id", "partner_id", "customer_id", "deal_id", "event_type",
                        "event_date", "first_year_contract_value", "currency"],
    "partner_fees": ["fee_id", "partner_id", "fee_date", "fee_type", "currency", "amount"],
}

# The deliberately bad rows written into every month (extra rows: they are not part of ``scale``).
BAD_ROW_KINDS: dict[str, list[str]] = {
    "subscription_billing": [
        "malformed_row",            # wrong field count
        "bad_date",                 # e.g. 2025-02-29 (no such day)
        "unparseable_amount",       # "1,250.00" (quoted, so the field count is right)
        "too_many_decimals",        # 12.345 USD
        "date_outside_month",       # last day of the previous month
        "duplicate_line_id",        # exact copy of the month's 5th line (a charge; the earlier row keeps the id)
        "unknown_currency",         # XXY
        "unknown_product_family",   # hardware
        "refund_original_unknown",  # refers to a line_id that exists nowhere
        "negative_charge",          # charge of -25.00
        "refund_exceeds_original",  # refund of the month's first line, larger than that charge
        "refund_currency_mismatch", # refund of the month's 3rd line in another currency
        "credit_over_100",          # customer CUS-X00001: approved joint claims 70 + 50
    ],
    "project_billing": [
        "malformed_row", "bad_date", "unknown_partner", "joint_without_contribution",
        "refund_original_unknown", "too_many_decimals", "date_outside_month",
        "duplicate_line_id", "negative_charge",
    ],
    "referral_events": [
        "malformed_row", "bad_date", "unknown_partner", "missing_first_year_contract_value",
        "unparseable_amount", "unknown_event_type",
    ],
    "partner_fees": [
        "malformed_row", "unknown_partner", "unparseable_amount", "bad_date",
        "unknown_currency", "too_many_decimals",
    ],
}

PROGRAM_YAML = """\
program:
  name: Example Partner Program
  currency: USD
agreements:                         # versions; the one with the latest effective_from on or before a line's date applies
  - effective_from: {effective_from}
    subscription:
      base_rates:
        platform: {{partner_led: 0.25, company_led: 0.20, joint: 0.30}}
        factory:  {{partner_led: 0.20, company_led: 0.15, joint: 0.25}}
      level_uplift: {{registered: 0.0, certified: 0.025, strategic: 0.05}}
      after_first_year_uplift: 0.0
      max_months: null
    project:
      partner_led_bands:            # on contract_value in program currency; whole-base
        - {{up_to: 50000, rate: 0.70}}
        - {{up_to: 250000, rate: 0.75}}
        - {{up_to: null, rate: 0.80}}
      company_led_rate: 0.40
    referral:
      qualified_lead: {{fixed: 500}}
      signed_agreement: {{pct_of_first_year_value: 0.10}}
      successful_delivery: {{fixed: 1000}}
      signed_within_days: 180
    tiers:
      scope: lifetime               # or calendar_year
      steps: [{{above: 1000000, uplift: 0.10}}]
payout:
  minimum: 50                       # program currency
  holding_days: 0
  net_fees: true
payer:                              # who pays, for payment files (SPEC section 8)
  name: Example Software Inc.
  iban: DE89370400440532013000      # debtor account for ISO 20022 files
  bic: COBADEFFXXX
  accounts: {{GBP: GB33BUKB20201555555555}}   # a debtor account per currency
  ach:
    odfi_routing: "091000019"
    company_id: "1234567890"
    company_name: EXAMPLE SOFTWARE
"""

CURRENCIES = ["USD", "EUR", "GBP", "JPY"]
# Rough value of one USD cent in each currency's minor unit, as an integer ratio (num, den):
# EUR 0.92, GBP 0.79, JPY 1.50 yen per cent. Used only to make amounts look plausible.
USD_CENT_TO_MINOR = {"USD": (1, 1), "EUR": (92, 100), "GBP": (79, 100), "JPY": (150, 100)}
# fx_rates.csv: value of one unit in USD, in units of 10**-RATE_DP[cur].
FX_BASE = {"EUR": 10850, "GBP": 12700, "JPY": 6700}
FX_DP = {"EUR": 4, "GBP": 4, "JPY": 6}

N_PARTNERS = 300
PLAN_PRICES_USD = [29, 49, 99, 149, 299, 499, 999, 2499]
WHALE = "PRT-0001"  # strategic partner of record of the busiest customers (crosses the tier step)
FEE_HEAVY = "PRT-0002"  # earns nothing, owes a 20000 USD Factory usage fee every month (negative balance)
UNKNOWN_PARTNER = "PRT-9999"
OVER_CREDIT_CUSTOMER = "CUS-X00001"

MARKER = ".payouts-sample"  # marks a data root written by write_sample (safe to overwrite)
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Month:
    """A generated month: its place in the sample (`index`) and the billing month (core.months)."""

    index: int
    month: BillingMonth

    @property
    def start(self) -> date:
        return self.month.first_day

    @property
    def end(self) -> date:
        return self.month.last_day

    @property
    def days(self) -> int:
        return self.month.days

    @property
    def key(self) -> str:  # 2025-01
        return str(self.month)

    @property
    def compact(self) -> str:  # 202501
        return self.month.compact

    def day(self, d: int) -> date:
        return self.start + timedelta(days=d - 1)


_add_months = add_months


def fmt_money(minor: int, currency: str) -> str:
    """Integer minor units -> decimal string with exactly the currency's digits."""
    return format_amount(minor, currency)


def _to_minor(usd_cents: int, currency: str) -> int:
    num, den = USD_CENT_TO_MINOR[currency]
    return usd_cents * num // den


def _csv_line(fields: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue()


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return len(rows)


def _insert_bad(rng: random.Random, rows: list[list[str]], bad: list, lo: int = 1) -> list:
    """Insert bad rows (lists of fields, or raw ``str`` lines) at deterministic positions >= lo."""
    out = list(rows)
    for b in bad:
        out.insert(rng.randint(min(lo, len(out)), len(out)), b)
    return out


def _write_mixed(path: Path, header: list[str], rows: list) -> int:
    """Like _write_csv, but a ``str`` item is written verbatim (used for malformed rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            if isinstance(r, str):
                f.write(r)
            else:
                w.writerow(r)
    return len(rows)


def _iban(rng: random.Random, country: str) -> str:
    """A syntactically valid (mod-97) but fake IBAN, or a routing-account string outside IBAN land."""
    layouts = {"DE": "n18", "FR": "n23", "NL": "a4n10", "ES": "n20", "IE": "a4n14", "GB": "a4n14"}
    if country not in layouts:
        return f"{rng.randint(10**8, 10**9 - 1)}-{rng.randint(10**9, 10**10 - 1)}"
    bban = ""
    for kind, n in re.findall(r"([an])(\d+)", layouts[country]):
        for _ in range(int(n)):
            bban += rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") if kind == "a" else str(rng.randint(0, 9))
    digits = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    check = 98 - int(digits) % 97
    return f"{country}{check:02d}{bban}"


# BICs of real banks by country (format-valid; the demo's IBANs and accounts are fake)
_BICS = {"US": "CHASUS33", "CA": "ROYCCAT2", "IN": "HDFCINBB", "AU": "CTBAAU2S", "DE": "DEUTDEFF",
         "FR": "BNPAFRPP", "NL": "INGBNL2A", "ES": "CAIXESBB", "IE": "AIBKIE2D", "GB": "BARCGB22", "JP": "MHCBJPJT"}


def _aba(rng: random.Random) -> str:
    """A 9-digit ABA routing number with a valid check digit (3-7-1 weights) and a Federal Reserve
    prefix (01-12)."""
    first = f"{rng.randint(1, 12):02d}" + "".join(str(rng.randint(0, 9)) for _ in range(6))
    total = sum(int(d) * w for d, w in zip(first, (3, 7, 1, 3, 7, 1, 3, 7)))
    return first + str((10 - total % 10) % 10)


def _bank_details(rng: random.Random, rows: list[list[str]]) -> None:
    """Give each partner row the bank columns the payment files need (SPEC section 1): US partners an
    ABA routing number and a 4-17 digit account (a few savings); IBAN countries a BIC where the
    SEPA file or the international file needs one; PayPal partners an e-mail receiver. A few details
    are left wrong on purpose (a bad routing number, a missing BIC), as real data has: `run`
    reports them as bank_details_unusable."""
    h = HEADERS["partners"]
    for r in rows:
        pid, currency, method, country = r[0], r[h.index("payout_currency")], r[h.index("payout_method")], \
            r[h.index("country")]
        bank_code = account_type = ""
        if method == "paypal":
            r[h.index("account_ref")] = f"payouts+{pid.lower()}@example.com"
        elif method == "bank_transfer" and r[h.index("account_ref")]:
            if country == "US":
                bank_code = _aba(rng)
                r[h.index("account_ref")] = str(rng.randint(10**7, 10**12))
                account_type = "savings" if rng.random() < 0.15 else ""
            elif not (currency == "EUR" and country in ("DE", "FR", "NL", "ES", "IE")):
                bank_code = _BICS[country]  # the international file needs the creditor's BIC
        r.extend([bank_code, account_type])
    # a few wrong on purpose: the first active US and GB bank partners after the scenario ones
    def first(country: str) -> list[str] | None:
        return next((r for r in rows[10:] if r[h.index("country")] == country and r[h.index("status")] == "active"
                     and r[h.index("payout_method")] == "bank_transfer" and r[h.index("account_ref")]), None)
    if (us := first("US")) is not None:
        us[h.index("bank_code")] = us[h.index("bank_code")][:8] + str((int(us[h.index("bank_code")][8]) + 1) % 10)
    if (gb := first("GB")) is not None:
        gb[h.index("bank_code")] = ""  # the international file needs a BIC


# --------------------------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------------------------
_NAME_A = ["North", "Blue", "Summit", "Bright", "Iron", "Silver", "Clear", "Cedar", "Harbor", "Nova",
           "Prime", "Vertex", "Atlas", "Beacon", "Delta", "Granite", "Lumen", "Orbit", "Pioneer",
           "Quantum", "River", "Stone", "True", "Vector", "Willow", "Zenith", "Apex", "Crest"]
_NAME_B = ["wind", "field", "bridge", "path", "point", "gate", "line", "works", "forge", "scale",
           "stack", "logic", "sight", "shore", "peak", "grid", "loop", "core"]
_NAME_C = ["Consulting", "Solutions", "Partners", "Digital", "Systems", "Advisory", "Labs", "Group",
           "Technologies", "Integration", "Services"]
_COUNTRY_SUFFIX = {"US": "LLC", "CA": "Inc.", "IN": "Pvt Ltd", "AU": "Pty Ltd", "DE": "GmbH",
                   "FR": "SAS", "NL": "B.V.", "ES": "S.L.", "IE": "Ltd", "GB": "Ltd", "JP": "K.K."}
_COUNTRIES = [("US", "USD", 30), ("CA", "USD", 4), ("IN", "USD", 4), ("AU", "USD", 4),
              ("DE", "EUR", 12), ("FR", "EUR", 8), ("NL", "EUR", 6), ("ES", "EUR", 4),
              ("IE", "EUR", 3), ("GB", "GBP", 14), ("JP", "JPY", 8)]

# Names that exercise output escaping: spreadsheet formula injection and RFC 4180 quoting.
_SPECIAL_NAMES = {
    13: ("=HYPERLINK(\"https://example.invalid/pay\",\"Click here\")", "US"),
    27: ("Smith, Jones & \"Partners\" Ltd", "GB"),
    41: ("+44 Digital Ltd", "GB"),
    55: ("@Scale Systems Inc.", "US"),
    69: ("-Minus Eins Beratung GmbH", "DE"),
    83: ("Müller & Söhne Systemhaus KG", "DE"),
    97: ("株式会社ミライ・パートナーズ", "JP"),
    111: ("Société Générale d'Intégration SAS", "FR"),
}


def _partners(rng: random.Random, months: list[Month]) -> tuple[list[list[str]], list[list[str]], dict]:
    """partners.csv and partner_levels.csv rows, plus facts the other generators need."""
    first = months[0].start
    rows, levels, info = [], [], {}
    weights = [w for _, _, w in _COUNTRIES]
    for n in range(1, N_PARTNERS + 1):
        pid = f"PRT-{n:04d}"
        if n in _SPECIAL_NAMES:
            name, country = _SPECIAL_NAMES[n]
        else:
            country = rng.choices(_COUNTRIES, weights)[0][0]
            name = f"{rng.choice(_NAME_A)}{rng.choice(_NAME_B)} {rng.choice(_NAME_C)} {_COUNTRY_SUFFIX[country]}"
        currency = next(c for cc, c, _ in _COUNTRIES if cc == country)
        if currency != "USD" and rng.random() < 0.1:
            currency = "USD"  # some foreign partners are paid in USD
        status = rng.choices(["active", "suspended", "terminated"], [88, 6, 6])[0]
        method = rng.choices(["bank_transfer", "paypal", "none"], [70, 20, 10])[0]
        account = "" if method == "none" else _iban(rng, country)
        wht = rng.choices(["0", "10", "15", "30"], [70, 12, 6, 12])[0]
        min_payout = ""
        if rng.random() < 0.12:
            min_payout = (rng.choice(["10000", "150000", "5000"]) if currency == "JPY"
                          else rng.choice(["25", "100", "250.00", "1000", "5000"]))
        level = rng.choices(["registered", "certified", "strategic"], [62, 28, 10])[0]
        # scenario partners
        if n == 1:
            name, country, currency, status, method, wht, min_payout, level = (
                "Northwind Strategic Alliances LLC", "US", "USD", "active", "bank_transfer", "0", "", "strategic")
            account = _iban(rng, country)
        elif n == 2:
            name, status, method, level = "Forgeline Factory Partners GmbH", "active", "bank_transfer", "certified"
            country, currency, account = "DE", "EUR", _iban(rng, "DE")
        elif n == 3:
            name, status, method, currency, min_payout = "Pebble Stack Labs Ltd", "active", "paypal", "GBP", "1000000"
            country, account = "GB", _iban(rng, "GB")
        elif n in (4, 5, 6):  # payout method set but account missing: counts as none
            method, account, status = "bank_transfer", "", "active"
        elif n == 7:
            status, level = "terminated", "certified"
        elif n == 8:
            status, level = "suspended", "strategic"
        rows.append([pid, name, currency, method, account, country, wht, status, min_payout])
        info[pid] = {"currency": currency, "status": status, "level": level, "country": country}

        # level history
        joined = first - timedelta(days=rng.randint(30, 1500))
        r = rng.random()
        if n == 1 or r < 0.75:
            if level == "registered" and rng.random() < 0.6:
                pass  # registered partners often have no row at all (the default)
            else:
                levels.append([pid, level, joined.isoformat()])
        if n > 8 and rng.random() < 0.2:
            # a level change inside the generated months (promotion or demotion)
            m = rng.choice(months)
            eff = m.day(rng.choice([1, 1, 15, m.days]))
            new = {"registered": "certified", "certified": rng.choice(["strategic", "registered"]),
                   "strategic": "certified"}[level]
            levels.append([pid, new, eff.isoformat()])
        if n == 9:
            # a row dated after the last generated month: must not apply yet
            levels.append([pid, "strategic", _add_months(months[-1].start, 2).isoformat()])
    levels.sort(key=lambda r: (r[0], r[2]))
    return rows, levels, info


def _claims(rng: random.Random, n_cust: int, months: list[Month], partner_ids: list[str],
            info: dict) -> list[list[str]]:
    """attributions.csv rows for the customer pool CUS-000000 .. CUS-{n_cust-1}."""
    first, last = months[0].start, months[-1].end
    span = (last - first).days
    w = [{"strategic": 12, "certified": 4, "registered": 1}[info[p]["level"]] for p in partner_ids]
    others = [p for p in partner_ids if p not in (WHALE, FEE_HEAVY)]
    w_others = [wt for p, wt in zip(partner_ids, w) if p not in (WHALE, FEE_HEAVY)]
    claims: list[list] = []

    def pick(exclude=()) -> str:
        while True:
            p = rng.choices(others, w_others)[0]
            if p not in exclude:
                return p

    def early() -> date:
        return first - timedelta(days=rng.randint(1, 1400))

    def et() -> str:
        return rng.choices(["partner_led", "company_led", "joint"], [50, 30, 20])[0]

    def add(cust, pid, source, eng, credit, vfrom, vto=None, status="approved"):
        claims.append([cust, pid, source, eng, credit, vfrom.isoformat(),
                       vto.isoformat() if vto else "", status])

    whale_customers = max(20, n_cust // 200)
    for c in range(n_cust):
        cust = f"CUS-{c:06d}"
        if c < whale_customers:
            add(cust, WHALE, "partner_of_record", "partner_led", rng.choice(["", "100"]), early())
            continue
        r = rng.random()
        if r < 0.12:
            continue  # no claim at all: unattributed
        if r < 0.15:  # only pending / rejected claims: unattributed too
            add(cust, pick(), rng.choice(["partner_of_record", "deal_registration"]), et(), "",
                early(), status=rng.choice(["pending", "rejected"]))
            continue
        if r < 0.73:  # one approved claim
            src = rng.choices(["partner_of_record", "deal_registration", "referral_link"], [50, 30, 20])[0]
            add(cust, pick(), src, et(), rng.choices(["", "100"], [70, 30])[0], early())
            if rng.random() < 0.08:  # plus a pending higher-precedence claim that must be ignored
                add(cust, pick(), "partner_of_record", et(), "", early(), status="pending")
            continue
        if r < 0.83:  # competing approved claims from different sources: precedence decides
            a, b = pick(), None
            b = pick(exclude=(a,))
            pair = rng.choice([("partner_of_record", "deal_registration"),
                               ("deal_registration", "referral_link"),
                               ("partner_of_record", "referral_link")])
            add(cust, a, pair[0], et(), "", early())
            add(cust, b, pair[1], et(), "100", early())
            if rng.random() < 0.3:
                add(cust, pick(exclude=(a, b)), "partner_of_record", et(), "", early(), status="rejected")
            continue
        if r < 0.89:  # joint credit, same source
            split = rng.choice([(60, 40), (50, 50), (70, 30), (40, 30, 30), (50, 30), (25, 25)])
            src = rng.choice(["partner_of_record", "deal_registration"])
            used: list[str] = []
            for pct in split:
                p = pick(exclude=tuple(used))
                used.append(p)
                add(cust, p, src, "joint", str(pct), early())
            continue
        if r < 0.93:  # hand-over: one claim ends inside the period, the next starts the day after
            a = pick()
            b = pick(exclude=(a,))
            cut = first + timedelta(days=rng.randint(0, max(0, span - 1)))
            add(cust, a, "partner_of_record", et(), "", early(), cut)
            add(cust, b, "partner_of_record", et(), "", cut + timedelta(days=1))
            continue
        if r < 0.96:  # two 100% claims of the same source: earliest valid_from wins (sometimes a tie)
            a = pick()
            b = pick(exclude=(a,))
            d1 = early()
            d2 = d1 if rng.random() < 0.4 else early()
            add(cust, a, "deal_registration", et(), "", d1)
            add(cust, b, "deal_registration", et(), "100", d2)
            continue
        # claim that starts inside the period (earlier lines unattributed)
        add(cust, pick(), rng.choice(["partner_of_record", "referral_link"]), et(), "",
            first + timedelta(days=rng.randint(0, span)))

    # the customer whose approved joint credit sums over 100 (its lines are errors)
    a = pick()
    b = pick(exclude=(a,))
    add(OVER_CREDIT_CUSTOMER, a, "partner_of_record", "joint", "70", early())
    add(OVER_CREDIT_CUSTOMER, b, "partner_of_record", "joint", "50", early())

    return [[f"CLM-{i + 1:06d}"] + [str(x) for x in cl] for i, cl in enumerate(claims)]


def _fx_rows(rng: random.Random, months: list[Month]) -> list[list[str]]:
    """Month-end rates (from the month before the first one), plus superseded mid-month EUR rates."""

    def fmt(cur: str, v: int) -> str:
        dp = FX_DP[cur]
        return f"{v // 10 ** dp}.{v % 10 ** dp:0{dp}d}"

    rows = []
    level = dict(FX_BASE)
    dates = [months[0].start - timedelta(days=1)] + [m.end for m in months]
    for i, d in enumerate(dates):
        for cur in ["EUR", "GBP", "JPY"]:
            level[cur] += rng.randint(-60, 60)
            rows.append([d.isoformat(), cur, fmt(cur, level[cur])])
        if i > 0:
            mid = months[i - 1].day(15)
            rows.append([mid.isoformat(), "EUR", fmt("EUR", level["EUR"] + rng.randint(-40, 40))])
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


# --------------------------------------------------------------------------------------------
# Subscription billing: DuckDB, streamed
# --------------------------------------------------------------------------------------------
def _subscription_sql(seed: int, m: Month, prev: Month | None, first: Month, last: Month,
                      source: str, n_cust: int, width: int) -> str:
    """Subscription lines of month m, one per line index ``i`` of ``source`` (a table or table
    function with one BIGINT column ``i``). Every field is a formula of (seed, month, i), built
    from six 64-bit hashes whose bit ranges are sliced into independent draws:

    * ``ho = h('o', month, i)``: is the row a refund (odd rows only, 1.4%), chargeback or refund,
      does it refund last month's line ``i`` or this month's line ``i - 1``, refunded share, day.
    * ``hr = h('r', sm, si)`` of the *source* line (the row itself for a charge, the original for
      a refund): customer (skewed towards small numbers), subscription slot, quantity.
    * ``hc = h('c', c)``: the customer's currency, discount, first subscription's start.
    * ``hd = h('d', c, sm)``: the customer's invoice day in the source month.
    * ``hk = h('k', c, k)``: start, product family and plan price of subscription slot k.

    A refund recomputes its original's fields from (sm, si), so it always matches the original's
    customer, subscription, currency and amount. Odd rows refund either row i - 1 of the same month
    (always a charge) or row i of the previous month (only if that row is a charge), so no charge is
    ever refunded twice.
    """

    def H(salt: str, *args: str) -> str:
        parts = ", ".join(f"CAST({a} AS BIGINT)" for a in args)
        return f"hash(CAST({int(seed)} AS BIGINT), '{salt}', {parts})"

    mi = m.index
    ms, dm = f"DATE '{m.start.isoformat()}'", m.days
    if prev is None:
        pms, pdm, pkey, cross = ms, dm, m.compact, "FALSE"
    else:
        pms, pdm, pkey = f"DATE '{prev.start.isoformat()}'", prev.days, prev.compact
        # last month's line i must be a charge: not (odd and drawn as a refund)
        cross = f"((ho >> 12) % 2 = 0 AND {H('o', str(mi - 1), 'i')} % 1000 >= 14)"
    fms = f"DATE '{first.start.isoformat()}'"
    span = (last.end - first.start).days + 1
    prices = "[" + ", ".join(str(p) for p in PLAN_PRICES_USD) + "]"
    n = int(n_cust)

    def pad(col: str, w: int = width) -> str:  # zero-padded to w digits (values < 10**w)
        return f"substr(CAST({col} + {10 ** w} AS VARCHAR), 2)"

    def start_expr(k: str, hk: str) -> str:
        # slot 0 started before the first month; slots 1-3 may start up to the last month
        return (f"(CASE WHEN {k} = 0 THEN {fms} - CAST(30 + (hc >> 16) % 1100 AS INTEGER) "
                f"ELSE {fms} - 1100 + CAST({hk} % {1100 + span} AS INTEGER) END)")

    return f"""
WITH b AS (
  SELECT i, {H('o', str(mi), 'i')} AS ho FROM {source}
), s AS (
  SELECT i, ho, i % 2 = 1 AND ho % 1000 < 14 AS rf FROM b
), t AS (
  SELECT i, ho,
    CASE WHEN NOT rf THEN 'charge' WHEN (ho >> 10) % 3 = 0 THEN 'chargeback' ELSE 'refund' END AS lt,
    CASE WHEN rf AND {cross} THEN {mi - 1} ELSE {mi} END AS sm,
    CASE WHEN NOT rf OR {cross} THEN i ELSE i - 1 END AS si
  FROM s
), u AS (
  SELECT *, {H('r', 'sm', 'si')} AS hr FROM t
), c AS (
  SELECT *,
    CAST(((hr % {n}) * ((hr >> 20) % {n})) // {n} AS BIGINT) AS c,
    CAST((hr >> 40) % 4 AS BIGINT) AS k0,
    CASE WHEN sm = {mi} THEN {ms} ELSE {pms} END AS sms,
    CASE WHEN sm = {mi} THEN {dm} ELSE {pdm} END AS sdm,
    CASE WHEN sm = {mi} THEN '{m.compact}' ELSE '{pkey}' END AS skey
  FROM u
), d AS (
  SELECT *, {H('c', 'c')} AS hc, sms + CAST({H('d', 'c', 'sm')} % sdm AS INTEGER) AS odate,
    {H('k', 'c', 'k0')} AS hk0
  FROM c
), e AS (
  SELECT *, CASE WHEN {start_expr('k0', 'hk0')} <= odate THEN k0 ELSE 0 END AS k FROM d
), f AS (
  SELECT *, CASE WHEN k = k0 THEN hk0 ELSE {H('k', 'c', 'k')} END AS hk FROM e
), g AS (
  SELECT *,
    {start_expr('k', 'hk')} AS sstart,
    CASE WHEN (hk >> 24) % 3 = 0 THEN 'factory' ELSE 'platform' END AS family,
    CASE WHEN hc % 100 < 58 THEN 'USD' WHEN hc % 100 < 78 THEN 'EUR'
         WHEN hc % 100 < 90 THEN 'GBP' ELSE 'JPY' END AS cur,
    CAST({prices}[CAST((hk >> 32) % {len(PLAN_PRICES_USD)} AS INTEGER) + 1] AS BIGINT) * 100
      * CAST(1 + (hr >> 44) % 5 AS BIGINT)
      * (100 - 5 * CAST((hc >> 8) % 5 AS BIGINT)) // 100 AS usd_cents
  FROM f
), h AS (
  SELECT *,
    CASE cur WHEN 'USD' THEN usd_cents WHEN 'EUR' THEN usd_cents * 92 // 100
             WHEN 'GBP' THEN usd_cents * 79 // 100 ELSE usd_cents * 150 // 100 END AS om
  FROM g
), r AS (
  SELECT *,
    CASE WHEN lt = 'charge' THEN om
         WHEN lt = 'chargeback' THEN -om
         ELSE -greatest(1, om * CAST([100, 50, 25, 10, 100, 75][CAST((ho >> 14) % 6 AS INTEGER) + 1] AS BIGINT) // 100)
    END AS amt,
    CASE WHEN lt = 'charge' THEN odate
         WHEN sm = {mi} THEN least(odate + CAST(1 + (ho >> 20) % 10 AS INTEGER), {ms} + {dm - 1})
         ELSE {ms} + CAST((ho >> 20) % {dm} AS INTEGER) END AS idate
  FROM h
)
SELECT i, lt, cur, amt, om,
  'SB-{m.compact}-' || {pad('i')} AS line_id,
  CASE lt WHEN 'charge' THEN 'INV-{m.compact}-' || {pad('c', 6)}
          WHEN 'refund' THEN 'CN-{m.compact}-' || {pad('i')}
          ELSE 'CB-{m.compact}-' || {pad('i')} END AS invoice_id,
  CAST(idate AS VARCHAR) AS invoice_date,
  'CUS-' || {pad('c', 6)} AS customer_id,
  'SUB-' || {pad('c', 6)} || '-' || CAST(k AS VARCHAR) AS subscription_id,
  CAST(sstart AS VARCHAR) AS subscription_start,
  family,
  CASE WHEN cur = 'JPY' THEN CAST(amt AS VARCHAR)  -- exact: DECIMAL(18,0) x 0.01 is DECIMAL(18,2)
       ELSE CAST(CAST(amt AS DECIMAL(18, 0)) * CAST(0.01 AS DECIMAL(3, 2)) AS VARCHAR) END AS amount,
  CASE WHEN lt = 'charge' THEN '' ELSE 'SB-' || skey || '-' || {pad('si')} END AS refers_to_line_id
FROM r
"""


_SUB_COLS = HEADERS["subscription_billing"]


def _line_sql(inner: str) -> str:
    cols = ", ".join(
        {"currency": "cur", "line_type": "lt", "product_family": "family"}.get(c, c) for c in _SUB_COLS)
    return f"SELECT concat(concat_ws(',', {cols}), chr(10)) AS line FROM ({inner}) q"


def _write_arrow_strings(f, arr) -> None:
    """Write the concatenated bytes of an Arrow string array (each value ends in a newline)."""
    import numpy as np
    import pyarrow as pa

    if len(arr) == 0:
        return
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.large_string())
    bufs = arr.buffers()
    off = np.frombuffer(bufs[1], dtype=np.int32 if pa.types.is_string(arr.type) else np.int64)
    s, e = int(off[arr.offset]), int(off[arr.offset + len(arr)])
    f.write(memoryview(bufs[2])[s:e])


def _subscription_bad_rows(m: Month, specials: dict, width: int) -> list[str]:
    """The month's deliberately bad rows, as finished CSV lines (in BAD_ROW_KINDS order)."""
    row0, row2, row4 = specials[0], specials[2], specials[4]
    prev_day = (m.start - timedelta(days=1)).isoformat()
    mid = m.day(min(20, m.days)).isoformat()
    k = m.compact

    def line(lid, inv, d, cust, sub, start, fam, cur, amt, lt, ref) -> str:
        return _csv_line([lid, inv, d, cust, sub, start, fam, cur, amt, lt, ref])

    x = lambda n: f"SB-{k}-X{n:0{width - 1}d}"  # noqa: E731  unique ids for the bad rows
    good = ["CUS-X00002", "SUB-X00002-0", "2024-03-01", "platform"]
    other_cur = "EUR" if row2["cur"] == "USD" else "USD"
    malformed = line(x(1), f"INV-{k}-X00001", mid, *good, "USD", "100.00", "charge", "")
    malformed = malformed.rsplit(",", 3)[0] + "\n"  # drop the last three fields
    return [
        malformed,
        line(x(2), f"INV-{k}-X00002", f"{m.start.year:04d}-{m.start.month:02d}-{m.days + 1:02d}", *good,
             "USD", "100.00", "charge", ""),
        line(x(3), f"INV-{k}-X00003", mid, *good, "USD", "1,250.00", "charge", ""),
        line(x(4), f"INV-{k}-X00004", mid, *good, "USD", "12.345", "charge", ""),
        line(x(5), f"INV-{k}-X00005", prev_day, *good, "USD", "300.00", "charge", ""),
        line(*(row4[c] for c in ("line_id", "invoice_id", "invoice_date", "customer_id", "subscription_id",
                                 "subscription_start", "family", "cur", "amount", "lt",
                                 "refers_to_line_id"))),
        line(x(7), f"INV-{k}-X00007", mid, *good[:3], "platform", "XXY", "100.00", "charge", ""),
        line(x(8), f"INV-{k}-X00008", mid, *good[:3], "hardware", "USD", "100.00", "charge", ""),
        line(x(9), f"CN-{k}-X00009", mid, *good, "USD", "-40.00", "refund", f"SB-199901-{0:0{width}d}"),
        line(x(10), f"INV-{k}-X00010", mid, *good, "USD", "-25.00", "charge", ""),
        line(x(11), f"CN-{k}-X00011", m.end.isoformat(), row0["customer_id"], row0["subscription_id"],
             row0["subscription_start"], row0["family"], row0["cur"],
             fmt_money(-(row0["om"] + 10 ** minor_units()[row0["cur"]]), row0["cur"]), "refund",
             row0["line_id"]),
        line(x(12), f"CN-{k}-X00012", m.end.isoformat(), row2["customer_id"], row2["subscription_id"],
             row2["subscription_start"], row2["family"], other_cur, "-10.00", "refund", row2["line_id"]),
        line(x(13), f"INV-{k}-X00013", mid, OVER_CREDIT_CUSTOMER, "SUB-X00001-0", "2024-06-01",
             "platform", "USD", "500.00", "charge", ""),
    ]


def _write_subscriptions(path: Path, seed: int, m: Month, prev: Month | None, first: Month,
                         last: Month, scale: int, n_cust: int, width: int, con) -> tuple[int, int]:
    # a real table (not range()) so that DuckDB scans it in parallel; insertion order is kept
    con.execute(f"CREATE OR REPLACE TEMP TABLE sample_idx AS SELECT range AS i FROM range({scale})")
    sql = _subscription_sql(seed, m, prev, first, last, "sample_idx", n_cust, width)
    spec_sql = _subscription_sql(seed, m, prev, first, last, "range(5) t(i)", n_cust, width)
    cur = con.execute(spec_sql)
    names = [d[0] for d in cur.description]
    specials = {r[0]: dict(zip(names, r)) for r in cur.fetchall()}
    bad = _subscription_bad_rows(m, specials, width)
    # bad row j goes after `positions[j]` valid rows: spread over the file, always after rows 0..4
    positions = [5 + (j + 1) * (scale - 5) // (len(bad) + 1) for j in range(len(bad))]
    queue = list(zip(positions, bad))

    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "wb") as f:
        f.write(_csv_line(_SUB_COLS).encode())
        reader = con.sql(_line_sql(sql)).to_arrow_reader(262_144)
        for batch in reader:
            arr = batch.column(0)
            cursor = 0
            while queue and queue[0][0] < written + len(arr):
                cut = queue[0][0] - written
                _write_arrow_strings(f, arr.slice(cursor, cut - cursor))
                cursor = cut
                f.write(queue.pop(0)[1].encode())
            _write_arrow_strings(f, arr.slice(cursor))
            written += len(arr)
        for _, text in queue:  # positions == scale
            f.write(text.encode())
    con.execute("DROP TABLE sample_idx")
    if written != scale:
        raise RuntimeError(f"subscription generator wrote {written} lines, expected {scale}")
    return scale + len(bad), len(bad)


# --------------------------------------------------------------------------------------------
# Projects, referrals, fees (small; Python)
# --------------------------------------------------------------------------------------------
def _projects(rng: random.Random, months: list[Month], partner_ids: list[str], info: dict,
              n_cust: int) -> list[dict]:
    active = [p for p in partner_ids if info[p]["status"] == "active" and p != FEE_HEAVY]
    projects: list[dict] = []

    def add(et, cur, cv_major, pct="", partner=None, cents=0):
        projects.append({
            "id": f"PRJ-{len(projects) + 1:04d}", "et": et, "cur": cur,
            "cv": cv_major * 10 ** minor_units()[cur] + cents, "pct": pct,
            "partner": partner or rng.choice(active), "customer": f"CUS-{rng.randrange(n_cust):06d}",
            "start": 0, "end": len(months) - 1, "forced": True,
        })

    # every band of the rate card (incl. both edges), each currency, each engagement type
    add("partner_led", "USD", 30000)
    add("partner_led", "USD", 50000)             # exactly on the first band's up_to
    add("partner_led", "USD", 50000, cents=1)    # 50000.01: second band
    add("partner_led", "USD", 120000)
    add("partner_led", "USD", 250000)            # exactly on the second band's up_to
    add("partner_led", "USD", 400000)
    add("partner_led", "EUR", 40000)
    add("partner_led", "GBP", 220000)            # about 280k USD: third band
    add("partner_led", "JPY", 15000000)          # about 100k USD: second band
    add("company_led", "USD", 50000)
    add("company_led", "EUR", 80000)
    add("company_led", "JPY", 9000000)
    add("joint", "USD", 150000, "60")            # PRJ-0013
    add("joint", "GBP", 90000, "35")
    add("joint", "EUR", 60000, "62.5")
    # a terminated partner still delivering (earns, is not paid)
    add("partner_led", "USD", 75000, partner="PRT-0007")
    # ordinary projects starting over time
    for mi in range(len(months)):
        for _ in range(10 if mi == 0 else 4):
            et = rng.choices(["partner_led", "company_led", "joint"], [50, 30, 20])[0]
            cur = rng.choices(CURRENCIES, [60, 20, 12, 8])[0]
            usd = rng.choice([8000, 25000, 45000, 60000, 95000, 180000, 320000, 600000])
            cv = _to_minor(usd * 100 + rng.randint(0, 99) * 1000, cur)
            projects.append({
                "id": f"PRJ-{len(projects) + 1:04d}", "et": et, "cur": cur, "cv": cv,
                "pct": str(rng.choice([20, 30, 40, 50, 60, 75])) if et == "joint" else "",
                "partner": rng.choice(active), "customer": f"CUS-{rng.randrange(n_cust):06d}",
                "start": mi, "end": min(len(months) - 1, mi + rng.randint(1, 6)), "forced": False,
            })
    return projects


def _project_rows(rng: random.Random, m: Month, projects: list[dict], history: list[dict]) -> tuple[list, int]:
    """Valid project lines for month m (history: earlier charges, updated in place)."""
    charges = []
    for p in projects:
        if not (p["start"] <= m.index <= p["end"]):
            continue
        n = 1 if (p["forced"] and m.index == 0) else rng.choices([0, 1, 2], [15, 60, 25])[0]
        for _ in range(n):
            pct = rng.choice([5, 10, 15, 20, 25])
            minor = p["cv"] * pct // 100
            charges.append({"p": p, "date": m.day(rng.randint(1, m.days)), "amt": minor})
    charges.sort(key=lambda c: (c["date"], c["p"]["id"]))
    rows = []
    for seq, ch in enumerate(charges, 1):
        p = ch["p"]
        ch["line_id"] = f"PB-{m.compact}-{seq:04d}"
        ch["refunded"] = 0
        ch["inv"] = f"PINV-{m.compact}-{seq:04d}"
        rows.append((ch["date"], seq, ch, None))
    # refunds (credit notes) of earlier charges: same or earlier month, never past the original
    pool = [c for c in history] + [c for c in charges if c["date"] < m.end]
    seq = 900
    for _ in range(rng.randint(1, 2) if pool else 0):
        orig = rng.choice(pool)
        left = orig["amt"] - orig["refunded"]
        if left <= 0:
            continue
        amt = max(1, left * rng.choice([10, 25, 50, 100]) // 100)
        orig["refunded"] += amt
        lo = orig["date"] + timedelta(days=1) if orig["date"] >= m.start else m.start
        d = lo + timedelta(days=rng.randint(0, (m.end - lo).days))
        seq += 1
        rows.append((d, seq, {"p": orig["p"], "date": d, "amt": -amt, "line_id": f"PB-{m.compact}-{seq:04d}",
                              "inv": f"PCN-{m.compact}-{seq:04d}"}, orig))
    rows.sort(key=lambda r: (r[0], r[1]))
    out = []
    for d, _, ch, orig in rows:
        p = ch["p"]
        out.append([ch["line_id"], ch["inv"], d.isoformat(), p["customer"], p["cur"],
                    fmt_money(ch["amt"], p["cur"]), "charge" if orig is None else "refund",
                    "" if orig is None else orig["line_id"], p["id"], p["et"], p["partner"],
                    fmt_money(p["cv"], p["cur"]), p["pct"]])
    history.extend(charges)
    return out, len(out)


def _project_bad_rows(m: Month, valid: list[list[str]], prev_first_id: str | None) -> list:
    k, mid = m.compact, m.day(min(12, m.days)).isoformat()
    base = ["", "", mid, "CUS-X00002", "USD", "5000.00", "charge", "", "PRJ-X001", "partner_led",
            "PRT-0010", "30000.00", ""]

    def row(n, **kw):
        r = list(base)
        r[0], r[1] = f"PB-{k}-X{n:03d}", f"PINV-{k}-X{n:03d}"
        for key, v in kw.items():
            r[HEADERS["project_billing"].index(key)] = v
        return r

    dup_id = prev_first_id or valid[0][0]
    malformed = _csv_line(row(1)).rsplit(",", 4)[0] + "\n"
    return [
        malformed,
        row(2, invoice_date=f"{m.start.year:04d}-13-01"),
        row(3, partner_id=UNKNOWN_PARTNER),
        row(4, engagement_type="joint", partner_contribution_pct="", project_id="PRJ-X013",
            contract_value="150000.00"),
        row(5, line_type="refund", amount="-500.00", refers_to_line_id="PB-199901-0001"),
        row(6, currency="JPY", amount="150000.5", contract_value="4500000"),
        row(7, invoice_date=_add_months(m.start, 1).isoformat()),
        [dup_id] + row(8)[1:],
        row(9, amount="-1200.00"),
    ]


def _referral_events(rng: random.Random, months: list[Month], partner_ids: list[str],
                     info: dict) -> list[dict]:
    first, last = months[0].start, months[-1].end
    span = (last - first).days
    referrers = [p for p in partner_ids if info[p]["status"] != "terminated" and p != FEE_HEAVY]
    events: list[dict] = []
    deal_no = 0

    def ev(pid, cust, deal, typ, d, fycv_minor=None, cur="USD"):
        events.append({"pid": pid, "cust": cust, "deal": deal, "type": typ, "date": d,
                       "fycv": "" if fycv_minor is None else fmt_money(fycv_minor, cur), "cur": cur})

    n_deals = 14 * len(months)
    for _ in range(n_deals):
        deal_no += 1
        deal = f"DEAL-{deal_no:05d}"
        pid = rng.choice(referrers)
        cust = f"PROS-{rng.randint(1, 99999):05d}"
        cur = rng.choices(CURRENCIES, [60, 20, 12, 8])[0]
        lead = first + timedelta(days=rng.randint(0, span))
        ev(pid, cust, deal, "qualified_lead", lead, cur=cur)
        gap = rng.randint(2, 20) if rng.random() < 0.5 else rng.randint(21, 175)
        signed = lead + timedelta(days=gap)
        if rng.random() < 0.75 and signed <= last:
            fy = _to_minor(rng.choice([12000, 24000, 48000, 90000, 150000, 400000]) * 100, cur)
            ev(pid, cust, deal, "signed_agreement", signed, fy, cur)
            delivered = signed + timedelta(days=rng.randint(10, 90))
            if rng.random() < 0.7 and delivered <= last:
                ev(pid, cust, deal, "successful_delivery", delivered, cur=cur)
    for m in months:
        # a signed agreement with no lead at all (reported, not paid)
        deal_no += 1
        fy = _to_minor(60000 * 100, "USD")
        ev(rng.choice(referrers), f"PROS-{rng.randint(1, 99999):05d}", f"DEAL-{deal_no:05d}",
           "signed_agreement", m.day(rng.randint(1, m.days)), fy, "USD")
        # a lead by one partner, signed by another partner (no lead from the same partner)
        deal_no += 1
        a = rng.choice(referrers)
        b = rng.choice([p for p in referrers if p != a])
        d = m.day(rng.randint(1, max(1, m.days - 5)))
        ev(a, "PROS-70000", f"DEAL-{deal_no:05d}", "qualified_lead", d, cur="EUR")
        ev(b, "PROS-70000", f"DEAL-{deal_no:05d}", "signed_agreement", d + timedelta(days=3),
           _to_minor(30000 * 100, "EUR"), "EUR")
    # repeated (deal_id, event_type): a lead reported twice (same month), and one again a month later
    leads = [e for e in events if e["type"] == "qualified_lead" and e["date"] < last]
    leads.sort(key=lambda e: (e["date"], e["deal"]))
    for e in leads[:2]:
        again = min(last, e["date"] + timedelta(days=1 if e is leads[0] else 31))
        ev(e["pid"], e["cust"], e["deal"], e["type"], again, cur=e["cur"])
    # signed exactly 180 days and 181 days after its lead, when the period is long enough
    if span >= 181:
        for gap in (180, 181):
            deal_no += 1
            pid = rng.choice(referrers)
            ev(pid, "PROS-80000", f"DEAL-{deal_no:05d}", "qualified_lead", first, cur="USD")
            ev(pid, "PROS-80000", f"DEAL-{deal_no:05d}", "signed_agreement", first + timedelta(days=gap),
               _to_minor(50000 * 100, "USD"), "USD")
    return events


def _referral_rows(rng: random.Random, m: Month, events: list[dict]) -> list[list[str]]:
    mine = [e for e in events if m.start <= e["date"] <= m.end]
    order = {"qualified_lead": 0, "signed_agreement": 1, "successful_delivery": 2}
    mine.sort(key=lambda e: (e["date"], e["deal"], order[e["type"]]))
    return [[f"RE-{m.compact}-{i:04d}", e["pid"], e["cust"], e["deal"], e["type"], e["date"].isoformat(),
             e["fycv"], e["cur"]] for i, e in enumerate(mine, 1)]


def _referral_bad_rows(m: Month) -> list:
    k, mid = m.compact, m.day(min(10, m.days)).isoformat()
    malformed = _csv_line([f"RE-{k}-X001", "PRT-0010", "PROS-00001", f"DEAL-X{k}1", "qualified_lead"])
    return [
        malformed,
        [f"RE-{k}-X002", "PRT-0010", "PROS-00002", f"DEAL-X{k}2", "qualified_lead", f"{m.start.month:02d}/15/{m.start.year}", "", "USD"],
        [f"RE-{k}-X003", UNKNOWN_PARTNER, "PROS-00003", f"DEAL-X{k}3", "qualified_lead", mid, "", "USD"],
        [f"RE-{k}-X004", "PRT-0010", "PROS-00004", f"DEAL-X{k}4", "signed_agreement", mid, "", "USD"],
        [f"RE-{k}-X005", "PRT-0010", "PROS-00005", f"DEAL-X{k}5", "signed_agreement", mid, "approx 50k", "USD"],
        [f"RE-{k}-X006", "PRT-0010", "PROS-00006", f"DEAL-X{k}6", "demo_booked", mid, "", "USD"],
    ]


def _fee_rows(rng: random.Random, m: Month, partner_ids: list[str], info: dict) -> list[list[str]]:
    rows = []

    def fee(pid, typ, usd_cents, cur=None, day=None):
        cur = cur or info[pid]["currency"]
        rows.append([pid, m.day(day or rng.randint(1, m.days)).isoformat(), typ, cur,
                     fmt_money(max(1, _to_minor(usd_cents, cur)), cur)])

    for pid in partner_ids:
        lvl, st = info[pid]["level"], info[pid]["status"]
        if st == "terminated":
            continue
        if lvl in ("certified", "strategic"):
            fee(pid, "platform_fee", 25000 if lvl == "certified" else 50000, day=1)
        if lvl == "strategic" and m.index == 0:
            fee(pid, "program_fee", 500000, day=1)
        if rng.random() < 0.15:
            fee(pid, "factory_usage", rng.randint(5000, 300000))
        if rng.random() < 0.08:
            fee(pid, "api_fee", rng.randint(500, 20000), cur=rng.choice([None, "USD"]))
    fee(FEE_HEAVY, "factory_usage", 2000000, cur="USD", day=m.days)  # negative balance
    rows.sort(key=lambda r: (r[1], r[0], r[2]))
    return [[f"FE-{m.compact}-{i:04d}"] + r for i, r in enumerate(rows, 1)]


def _adjustments(m: Month, info: dict) -> list[list[str]]:
    """A month's adjustments: a returned wire re-sent, an overpayment recovered, one in another
    currency than the partner's payout currency, and one bad row (a blank reason)."""
    paid_eur = next((p for p, i in sorted(info.items()) if i["currency"] == "EUR" and i["status"] == "active"
                     and p != FEE_HEAVY), None)
    rows = [
        [f"ADJ-{m.compact}-001", WHALE, "USD", "1250.00", "wire of the previous month returned by the bank: re-sent",
         "jane.doe"],
        [f"ADJ-{m.compact}-002", WHALE, "USD", "-300.00", "referral fee paid twice last month", "jane.doe"],
    ]
    if paid_eur:
        rows.append([f"ADJ-{m.compact}-003", paid_eur, "USD", "80.00", "goodwill credit agreed by the partner manager",
                     "raj.patel"])
    rows.append([f"ADJ-{m.compact}-004", WHALE, "USD", "10.00", "", "jane.doe"])  # no reason: quarantined
    return rows


def _fee_bad_rows(m: Month) -> list:
    k, mid = m.compact, m.day(min(18, m.days)).isoformat()
    return [
        _csv_line([f"FE-{k}-X001", "PRT-0010", mid, "api_fee", "USD"]),
        [f"FE-{k}-X002", UNKNOWN_PARTNER, mid, "factory_usage", "USD", "150.00"],
        [f"FE-{k}-X003", "PRT-0010", mid, "factory_usage", "USD", "one hundred"],
        [f"FE-{k}-X004", "PRT-0010", f"{m.start.year}-{m.start.month:02d}-00", "api_fee", "USD", "20.00"],
        [f"FE-{k}-X005", "PRT-0010", mid, "platform_fee", "XXY", "250.00"],
        [f"FE-{k}-X006", "PRT-0010", mid, "api_fee", "USD", "12.345"],
    ]


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def write_sample(data_dir: str | Path, months: int = 3, scale: int = 2000, seed: int = 7,
                 first_month: str = "2025-01") -> dict:
    """Write a demo input tree under ``data_dir`` and return a summary.

    ``scale`` is the number of *valid* subscription lines per month; every export file also gets
    a constant handful of deliberately bad rows (``BAD_ROW_KINDS``) on top.

    ``reference/`` and ``exports/`` under ``data_dir`` are replaced when an earlier sample wrote
    them (``data_dir/.payouts-sample`` exists); otherwise existing input data raises
    ``FileExistsError``. Bad arguments raise ``ValueError``.
    """
    import duckdb

    mt = _MONTH_RE.match(first_month or "")
    if not mt or not 1 <= int(mt.group(2)) <= 12:
        raise ValueError(f"first_month must be YYYY-MM, got {first_month!r}")
    if int(months) < 1:
        raise ValueError("months must be at least 1")
    if int(scale) < 10:
        raise ValueError("scale must be at least 10 (lines per month)")
    months, scale, seed = int(months), int(scale), int(seed)
    root = Path(data_dir)
    start = date(int(mt.group(1)), int(mt.group(2)), 1)
    ms = [Month(i, BillingMonth.of(start).plus(i)) for i in range(months)]
    n_cust = min(20000, max(400, scale // 4))
    width = max(8, len(str(scale)))

    # Replace an earlier sample (so no stale month is left behind), but never real data.
    marker = root / MARKER
    if not marker.exists() and any((root / sub).exists() for sub in ("reference", "exports")):
        raise FileExistsError(f"{root} already holds input data that `payouts sample` did not write "
                              f"(no {MARKER} file); refusing to overwrite it")
    for sub in ("reference", "exports"):
        if (root / sub).exists():
            shutil.rmtree(root / sub)
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"Demo data written by pipelines.sample.write_sample(months={months}, scale={scale}, "
                      f"seed={seed}, first_month={first_month!r}); `payouts sample` may overwrite it.\n",
                      encoding="utf-8")
    ref = root / "reference"
    ref.mkdir(parents=True)
    files: dict[str, dict] = {}

    def note(rel: str, rows: int, bad: int = 0) -> None:
        files[rel] = {"rows": rows, "bad_rows": bad}

    # program.yaml: the SPEC section 3 example (its agreement starts no later than the first month)
    eff = min(date(2025, 1, 1), start)
    (ref / "program.yaml").write_text(PROGRAM_YAML.format(effective_from=eff.isoformat()), encoding="utf-8")

    rng = random.Random(f"partners:{seed}")
    partner_rows, level_rows, info = _partners(rng, ms)
    _bank_details(random.Random(f"banks:{seed}"), partner_rows)
    partner_ids = [r[0] for r in partner_rows]
    note("reference/partners.csv", _write_csv(ref / "partners.csv", HEADERS["partners"], partner_rows))
    note("reference/partner_levels.csv",
         _write_csv(ref / "partner_levels.csv", HEADERS["partner_levels"], level_rows))
    claims = _claims(random.Random(f"claims:{seed}"), n_cust, ms, partner_ids, info)
    note("reference/attributions.csv", _write_csv(ref / "attributions.csv", HEADERS["attributions"], claims))
    note("reference/fx_rates.csv",
         _write_csv(ref / "fx_rates.csv", HEADERS["fx_rates"], _fx_rows(random.Random(f"fx:{seed}"), ms)))

    projects = _projects(random.Random(f"projects:{seed}"), ms, partner_ids, info, n_cust)
    events = _referral_events(random.Random(f"referrals:{seed}"), ms, partner_ids, info)
    history: list[dict] = []
    prev_first_pid = None

    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = true")
        for m in ms:
            out = root / "exports" / m.key
            rel = f"exports/{m.key}/"
            rows, bad = _write_subscriptions(out / "subscription_billing.csv", seed, m,
                                             ms[m.index - 1] if m.index else None, ms[0], ms[-1],
                                             scale, n_cust, width, con)
            note(rel + "subscription_billing.csv", rows, bad)

            prng = random.Random(f"project-month:{seed}:{m.key}")
            valid, _ = _project_rows(prng, m, projects, history)
            bad_rows = _project_bad_rows(m, valid, prev_first_pid)
            prev_first_pid = valid[0][0] if valid else prev_first_pid
            note(rel + "project_billing.csv",
                 _write_mixed(out / "project_billing.csv", HEADERS["project_billing"],
                              _insert_bad(prng, valid, bad_rows, lo=1)), len(bad_rows))

            rrng = random.Random(f"referral-month:{seed}:{m.key}")
            valid = _referral_rows(rrng, m, events)
            bad_rows = _referral_bad_rows(m)
            note(rel + "referral_events.csv",
                 _write_mixed(out / "referral_events.csv", HEADERS["referral_events"],
                              _insert_bad(rrng, valid, bad_rows)), len(bad_rows))

            frng = random.Random(f"fee-month:{seed}:{m.key}")
            valid = _fee_rows(frng, m, partner_ids, info)
            bad_rows = _fee_bad_rows(m)
            note(rel + "partner_fees.csv",
                 _write_mixed(out / "partner_fees.csv", HEADERS["partner_fees"],
                              _insert_bad(frng, valid, bad_rows)), len(bad_rows))
            if m.index == 1:  # the second month: corrections finance entered (docs/closing-a-month.md)
                rows_adj = _adjustments(m, info)
                note(rel + "adjustments.csv",
                     _write_mixed(out / "adjustments.csv", HEADERS["adjustments"], rows_adj), 1)
    finally:
        con.close()

    return {
        "data_dir": str(root),
        "months": [m.key for m in ms],
        "scale": scale,
        "seed": seed,
        "partners": len(partner_rows),
        "customers": n_cust,
        "files": files,
    }
