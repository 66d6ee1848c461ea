-- each partner's month, line by line: every row but the month's subscription shares, which
-- sql/statement_lines writes and merges with these (a temp table, tens of thousands of rows).
-- amount is in the row's own currency; payout_amount (payout currency) is set only on rows that
-- move the balance, so:
--   closing_balance = opening_balance + sum(payout_amount of conversion and payout rows).
-- conversion rows sum each currency's payable movements per kind and convert them at month m's
-- rate (each currency converted as one sum and rounded once; the per-kind parts add up to it).
with results as (
    select * from statement_partners
),

-- the movements written row by row here: the carried and other movements and the project shares.
-- the month's subscription shares (8.9M rows at 10M lines) are written from sub_shares and their
-- claims instead (sql/statement_lines): most of a share row's fields are its claim's
generic_movements as (
    select * from carried_movements
    union all by name
    select * from other_movements
    union all by name
    select * from share_movements where share_source = 'project'
),

-- a rate and a credit % have a handful of distinct values: each is formatted once and found by a
-- join (formatting 9M of them, with rtrim, took 2.5 s at 10M lines; the joins take 0.1 s)
rate_texts as (
    select rate, fmt_dec(rate) as text
    from (select distinct rate from generic_movements where rate is not null)
),

pct_texts as (
    select credit_pct, fmt_dec(credit_pct) as text
    from (select distinct credit_pct from generic_movements where credit_pct is not null)
),

-- the same for the source file and the item (a product family or a project): few distinct
-- values, each made a CSV field once (csv_field: formula-safe, quoted where needed)
file_fields as (
    select source_file, csv_field(source_file) as field
    from (select distinct source_file from generic_movements where source_file is not null)
),

item_fields as (
    select item, csv_field(item) as field
    from (select distinct item from generic_movements where item is not null)
),

-- the statement's order within a day breaks ties by movement id (for a conversion, by currency).
-- no text is sorted: the month's shares are ordered by their export row, and a charge credited to
-- one partner more than once by credit key (the rest of their movement id is the same); the other
-- movements (few: clawbacks, fees, referral fees, carried movements) and the currencies by their
-- rank in text order. open_movements is those three: carried, shares and other movements
credit_ranks as (
    -- the project shares' credit keys (a charge credited to one partner more than once is listed
    -- by credit key; only the order of the ranks matters)
    select credit_key as sort_credit, row_number() over (order by credit_key) as tie
    from (select distinct credit_key from project_shares)
),

key_ranks as (
    select sort_key, row_number() over (order by sort_key) as tie
    from (select movement_id as sort_key from other_movements
          union select movement_id from carried_movements
          union select currency from conversions)
),

movements as (
    -- generic_movements with each row's tie: a project share's by its credit key, the carried and
    -- other movements' (share_source null) by movement id
    select g.*, cr.tie
    from generic_movements as g
    join credit_ranks as cr on cr.sort_credit = g.sort_credit
    where g.share_source = 'project'
    union all by name
    select g.*, kr.tie
    from generic_movements as g
    join key_ranks as kr on kr.sort_key = g.movement_id
    where g.share_source is null
),

movement_rows as (
    select
        m.partner_id,
        case when m.payable or not m.netted then 1 else 2 end as section,
        case when m.payable or not m.netted then m.kind else 'pending_' || m.kind end as entry,
        m.entry_date,
        coalesce(ff.field, '') as source_file,  -- a CSV field: csv_field(m.source_file)
        m.record_id,
        m.customer_id,
        coalesce(itf.field, '') as item,  -- a CSV field: csv_field(m.item)
        m.currency,
        fmt_money(m.billed_minor, m.digits) as billed_amount,
        pt.text as credit_pct,  -- fmt_dec(m.credit_pct)
        rt.text as rate,  -- fmt_dec(m.rate)
        fmt_money(m.amount_minor, m.digits) as amount,
        null::varchar as payout_amount,
        nullif(concat_ws('; ',
            m.note,
            case when m.billing_month < $billing_month then 'from ' || m.billing_month end,
            case when not m.payable then 'payable from ' || m.payable_month end,
            case when r.held then 'held (' || r.status || '): waits for a later run' end
        ), '') as note,
        m.kind,
        m.sort_row,  -- the month's shares: the charge's file and row (share_movements; null for others)
        m.tie
    from movements as m
    join results as r on r.partner_id = m.partner_id
    left join rate_texts as rt on rt.rate = m.rate
    left join pct_texts as pt on pt.credit_pct = m.credit_pct
    left join file_fields as ff on ff.source_file = m.source_file
    left join item_fields as itf on itf.item = m.item
),

conversion_rows as (
    select
        c.partner_id,
        3 as section,
        'conversion' as entry,
        null::date as entry_date,
        '' as source_file,  -- a CSV field, as in movement_rows
        null as record_id,
        null as customer_id,
        csv_field(c.kind) as item,  -- a CSV field, as in movement_rows
        c.currency,
        null as billed_amount,
        null as credit_pct,
        c.rate,
        fmt_money(c.source_minor, cur.digits) as amount,
        fmt_money(c.converted_minor, r.payout_digits) as payout_amount,
        c.currency || ' ' || c.kind || ' converted to ' || r.payout_currency || ' (' || c.currency || ' total '
            || fmt_money(c.currency_total_minor, r.payout_digits) || ' ' || r.payout_currency || ')' as note,
        c.kind,
        null::bigint as sort_row,
        kr.tie
    from conversions as c
    join key_ranks as kr on kr.sort_key = c.currency
    join results as r on r.partner_id = c.partner_id
    join currencies as cur on cur.code = c.currency
),

summary_rows as (
    select partner_id, 0 as section, 'opening_balance' as entry, fmt_money(opening_minor, payout_digits) as payout_amount,
           null as amount, null as note, 1 as n from results
    union all
    select partner_id, 4, 'payout', fmt_money(-gross_minor, payout_digits), fmt_money(gross_minor, payout_digits),
           'gross paid to ' || payout_currency, 1 from results where status = 'paid'
    union all
    select partner_id, 4, 'withholding', null, fmt_money(withholding_minor, payout_digits),
           'withheld from the gross payout', 2 from results where status = 'paid'
    union all
    select partner_id, 4, 'net_payment', null, fmt_money(net_minor, payout_digits),
           'sent to the partner', 3 from results where status = 'paid'
    union all
    select partner_id, 5, 'closing_balance', fmt_money(closing_minor, payout_digits), null,
           'status: ' || status, 1 from results
),

all_rows as (
    select partner_id, section, entry, entry_date, source_file, record_id, customer_id, item, currency,
           billed_amount, credit_pct, rate, amount, payout_amount, note,
           kind, sort_row, tie, 0 as n
    from movement_rows
    union all
    select partner_id, section, entry, entry_date, source_file, record_id, customer_id, item, currency,
           billed_amount, credit_pct, rate, amount, payout_amount, note, kind, sort_row, tie, 0
    from conversion_rows
    union all
    select s.partner_id, s.section, s.entry, null, null, null, null, null, r.payout_currency, null, null, null,
           s.amount, s.payout_amount, s.note, null, null, null, s.n
    from summary_rows as s
    join results as r on r.partner_id = s.partner_id
),

statement_rows as (
    select
        a.partner_id as statement_partner_id,
        r.statement_no,
        section as sort_section,
        list_position(['share', 'clawback', 'referral_fee', 'fee', 'adjustment', 'restatement'], kind) as sort_kind,
        entry_date as sort_date,
        sort_row,
        tie as sort_tie,
        n as sort_n,
        entry,
        entry_date as date,
        source_file,
        record_id,
        customer_id,
        item,
        currency,
        billed_amount,
        credit_pct,
        rate,
        amount,
        r.payout_currency,
        payout_amount,
        note
    from all_rows as a
    join results as r on r.partner_id = a.partner_id
)

-- the statement's order: (statement_no, sort_section, sort_kind, sort_date, sort_row, sort_tie,
-- sort_n), which is partner_id order first; the month's shares of a day in the order of their rows in
-- the billing exports, subscription file first; ties by movement id (see key_ranks). the order is
-- one 128-bit integer of bit fields, most significant first, a missing value above every present
-- one (nulls last): the sort compares one number per row (sorting on the seven columns took
-- 11.6 s against 6.3 s at 10M lines). widths: statement_no 24 bits, section 3, kind 3, date 23
-- (days from 1970 + 2^22: years 0000-9999), sort_row 42, tie 28, n 3. a value that does not fit
-- stops the run (error) rather than misorder a statement. row_text is the row as CSV from `entry`
-- to `note` with its line end (csv_field makes text formula-safe and quotes it where needed; a null
-- is an empty field; source_file and item are CSV fields already; the other fields are numbers,
-- dates, codes and fixed words, which need neither). the writer puts the partner's line number,
-- 1, 2, ... in that order, in front of it (outputs.write_statements)
select
    statement_partner_id,
    statement_no,
    case when statement_no < 16777216
              and sort_section between 0 and 6 and coalesce(sort_kind, 0) between 0 and 6
              and coalesce(date_diff('day', date '1970-01-01', sort_date), 0) between -4194304 and 4194302
              and coalesce(sort_row, 0) between 0 and 4398046511102
              and coalesce(sort_tie, 0) between 0 and 268435454 and sort_n between 0 and 7
         then (statement_no::hugeint << 103)
              + (sort_section::hugeint << 100)
              + (coalesce(sort_kind, 7)::hugeint << 97)
              + (coalesce(date_diff('day', date '1970-01-01', sort_date) + 4194304, 8388607)::hugeint << 74)
              + (coalesce(sort_row, 4398046511103)::hugeint << 32)
              + (coalesce(sort_tie, 268435455)::hugeint << 3)
              + sort_n
         else error('statement order: a sort value does not fit its bit field')
    end as line_order,
    concat_ws(',',
        entry, coalesce(cast(date as varchar), ''), coalesce(source_file, ''), csv_field(record_id),
        csv_field(customer_id), coalesce(item, ''), coalesce(currency, ''), coalesce(billed_amount, ''),
        coalesce(credit_pct, ''), coalesce(rate, ''), coalesce(amount, ''), coalesce(payout_currency, ''),
        coalesce(payout_amount, ''), csv_field(note)
    ) || chr(10) as row_text
from statement_rows
