-- Shared macros, created once per connection before any step runs.
-- Money is carried as HUGEINT minor units of its own currency (USD cents, JPY yen, KWD fils):
-- exact, and one rounding rule for every currency.

-- a decimal string in major units: optional minus, digits, optional fraction (no exponent, no plus).
create or replace macro is_money(s) as regexp_full_match(s, '-?[0-9]{1,18}(\.[0-9]+)?');

-- 10^d as an exact integer, for the digits currencies have (0..4).
create or replace macro pow10(d) as
    case d when 0 then 1 when 1 then 10 when 2 then 100 when 3 then 1000 when 4 then 10000 end::hugeint;

-- digits after the decimal point of a money string (already checked: is_money). position and
-- length, not split_part: no new string per row.
create or replace macro decimals_of(s) as
    case when position('.' in s) = 0 then 0 else length(s) - position('.' in s) end;

-- a money string (already checked: is_money and decimals_of(s) <= d) to minor units, exactly:
-- its digits as an integer, times 10^(d - its decimals): '-30.5' with d = 2 -> -305 x 10 = -3050.
create or replace macro to_minor(s, d) as
    try_cast(replace(s, '.', '') as hugeint) * pow10(cast(d as integer) - decimals_of(s));

-- a YYYY-MM-DD date or null. glob, not a regular expression: the same whole-string match of ten
-- characters, at a fraction of the cost per row.
create or replace macro as_date(s) as
    case when s glob '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]' then try_cast(s as date) end;

-- x / y rounded half away from zero, exactly, on integers (decimal division in duckdb gives a double).
create or replace macro div_round(x, y) as
    case when y = 0 then null
         else sign(x) * sign(y) * ((2 * abs(x::hugeint) + abs(y::hugeint)) // (2 * abs(y::hugeint)))
    end;

-- minor units back to a decimal string with exactly d digits: (-3050, 2) -> '-30.50'. exact: the
-- integer becomes a DECIMAL(w, 0) and is scaled by an exact decimal factor, whose text has d digits
-- (about 3x faster than integer division on HUGEINT, which statements do for every line). below
-- 10^14 minor units (every real line) the product fits DECIMAL(18, d), which is 64-bit arithmetic and
-- took a third of the time of DECIMAL(38, d) at 10M lines; larger values take the 128-bit path.
create or replace macro fmt_money_wide(m, d) as
    case d when 0 then cast(m::hugeint as varchar)
           when 1 then cast(m::hugeint::decimal(38, 0) * 0.1::decimal(2, 1) as varchar)
           when 2 then cast(m::hugeint::decimal(38, 0) * 0.01::decimal(3, 2) as varchar)
           when 3 then cast(m::hugeint::decimal(38, 0) * 0.001::decimal(4, 3) as varchar)
           when 4 then cast(m::hugeint::decimal(38, 0) * 0.0001::decimal(5, 4) as varchar)
    end;
create or replace macro fmt_money(m, d) as
    case when m > -100000000000000 and m < 100000000000000 and d between 0 and 3 then
        case d when 0 then cast(m::bigint as varchar)
               when 1 then cast(m::decimal(14, 0) * 0.1::decimal(2, 1) as varchar)
               when 2 then cast(m::decimal(14, 0) * 0.01::decimal(3, 2) as varchar)
               when 3 then cast(m::decimal(14, 0) * 0.001::decimal(4, 3) as varchar)
        end
    else fmt_money_wide(m, d) end;

-- text a spreadsheet would run as a formula gets a leading apostrophe (owasp csv injection advice).
-- (the first character looked up with `contains`, neither a regex nor `in (...)`: DuckDB plans an
-- IN list of six values as a hash join per call, and statements call this five times a row:
-- 4 columns at 9M rows went from 5.3 s to 1.4 s)
create or replace macro formula_start(s) as s <> '' and contains('=+-@' || chr(9) || chr(13), left(s, 1));
create or replace macro safe_text(s) as
    case when formula_start(s) then '''' || s else s end;

-- a text field of a CSV row: quoted (inner quotes doubled) where it holds a comma, a quote or a
-- line break, an empty string as "", null as an empty field (what polars' CSV writer does with
-- quote_style 'necessary' and null_value '', which wrote the statements before).
create or replace macro csv_text(s) as
    case when s is null then ''
         when s = '' then '""'
         when contains(s, ',') or contains(s, '"') or contains(s, chr(10)) or contains(s, chr(13))
             then '"' || replace(s, '"', '""') || '"'
         else s end;

-- a statement's text field: formula-safe, then quoted where needed.
create or replace macro csv_field(s) as csv_text(safe_text(s));

-- the last 4 characters of a sensitive account reference; nothing else of it ever leaves the run.
create or replace macro last4(s) as case when s is null or s = '' then null else right(s, 4) end;

-- a percentage string 0..100 with at most 4 decimals.
create or replace macro is_pct(s) as
    regexp_full_match(s, '[0-9]{1,3}(\.[0-9]{1,4})?') and try_cast(s as decimal(9, 4)) <= 100;

-- a decimal without trailing zeros, for rates and percentages people read: 0.250000 -> 0.25.
create or replace macro fmt_dec(x) as
    case when x is null then null
         when contains(x::varchar, '.') then rtrim(rtrim(x::varchar, '0'), '.')
         else x::varchar end;

-- a partner's share of a subscription charge, minor units of the charge's currency: minor x pct% x
-- rate, rounded half away from zero once, exactly. pct (0..100, 4 decimals) and rate (0..1, 6
-- decimals) are integers once scaled (pct x 10^4 <= 10^6, rate x 10^6 <= 10^6), so the exact product
-- is minor x pct_int x rate_int / 10^12. for 0 <= minor <= 9,000,000 the numerator stays below
-- 9.1 x 10^18, inside 64-bit integer arithmetic, and a non-negative quotient rounds half away from
-- zero by adding half the divisor (at 10M lines 0.2 s of CPU against 2.6 s for DECIMAL(38, 12)
-- arithmetic); any other value takes the decimal path. tests/test_money_text.py checks both.
create or replace macro credited_share(minor, pct, rate) as
    case when minor between 0 and 9000000 and pct between 0 and 100 and rate between 0 and 1 then
        ((minor::bigint * (pct * 10000)::bigint * (rate * 1000000)::bigint + 500000000000) // 1000000000000)::hugeint
    else round(minor::decimal(38, 0) * pct * 0.01::decimal(3, 2) * rate)::hugeint end;

-- a credited subscription charge in the program currency, major units, exact (the tier base's unit):
-- minor units x credit% x fx / 10^digits. one definition for sub_shares and the tier base steps.
create or replace macro credited_program(minor, pct, fx, d) as
    minor::decimal(38, 0) * pct * fx * 0.01::decimal(3, 2)
    * (case d when 0 then 1 when 1 then 0.1 when 2 then 0.01 when 3 then 0.001 else 0.0001 end)::decimal(5, 4);
