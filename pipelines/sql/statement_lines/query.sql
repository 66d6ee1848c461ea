-- the statements' rows, each as CSV text with its sort key (line_order; see sql/statement_other_rows
-- for its bit fields): the month's subscription shares, written here from sub_shares and their
-- claims, and every other row, from the temp table statement_other_rows. the other rows are a table
-- because a sort over the union of both queries ran out of memory under a 1 GB limit, which the
-- sort of this union does not. outputs.write_statements sorts by line_order.
with results as (
    select * from statement_partners
),

-- the texts of the few distinct rates, items and credit % (formatted once, found by a join)
rate_texts as (
    select rate, fmt_dec(rate) as text from (select distinct rate from sub_shares)
),

pct_texts as (
    select credit_pct, fmt_dec(credit_pct) as text from (select distinct credit_pct from credited_days)
),

file_fields as (
    select source_file, csv_field(source_file) as field
    from (select source_file from file_rows where file = 'subscription_billing')
),

item_fields as (
    -- every product family of the rate card: the shares' items are among them (typing quarantines
    -- any other), and a distinct over the shares would scan them again for every range of partners
    select product_family as item, csv_field(product_family) as field from product_families
),

credit_ranks as (
    -- a charge credited to one partner under several claims lists them by credit key (as movement
    -- ids sort): every claim's key ranked (a superset of the credited ones: only the order matters)
    select credit_key as sort_credit, row_number() over (order by credit_key) as tie
    from (select distinct credit_key from credited_days)
),

-- the month's subscription shares: the same fields and order as sql/statement_other_rows'
-- movement_rows and statement_rows give a share, but what a credit shares with its claim and day
-- (credited_days: entry and section from the day, date, source file, customer, credit %, payout
-- currency, the claim's notes, the order's high bits) is written once per claim (a few thousand
-- rows); per credit only the line id, item, currency, amounts, rate and tier note. at 10M lines:
-- 8.9M rows.
sub_claims as (
    select
        c.claim_day,
        r.partner_id,
        r.statement_no,
        r.payout_currency,
        c.invoice_date + p.holding_days < p.next_month_start as payable,  -- as share_movements
        c.invoice_date,
        c.customer_id,
        c.credit_pct,
        cr.tie,
        nullif(concat_ws('; ',
            case when not (c.invoice_date + p.holding_days < p.next_month_start)
                 then 'payable from ' || left(cast(c.invoice_date + p.holding_days as varchar), 7) end,
            case when r.held then 'held (' || r.status || '): waits for a later run' end
        ), '') as claim_note
    from credited_days as c
    join results as r on r.partner_id = c.partner_id
    join credit_ranks as cr on cr.sort_credit = c.credit_key
    cross join run_params as p
),

sub_claim_texts as (
    select
        k.claim_day,
        k.partner_id,
        k.statement_no,
        k.claim_note,
        -- entry, date and source file, then the line id
        case when k.payable then 'share' else 'pending_share' end || ',' || cast(k.invoice_date as varchar) || ','
            || ff.field || ',' as head,
        -- the customer, then the item
        ',' || csv_field(k.customer_id) || ',' as customer_part,
        -- the credit %, between the billed amount and the rate
        ',' || coalesce(pt.text, '') || ',' as pct_part,
        -- the payout currency and an empty payout amount, after the amount
        ',' || k.payout_currency || ',,' as payout_part,
        csv_field(k.claim_note) as note_field,
        -- line_order less the row's own bits (see below): partner, section, kind (share), date, tie
        case when k.statement_no < 16777216
                  and date_diff('day', date '1970-01-01', k.invoice_date) between -4194304 and 4194302
                  and k.tie between 0 and 268435454
             then (k.statement_no::hugeint << 103)
                  + ((case when k.payable then 1 else 2 end)::hugeint << 100)
                  + (1::hugeint << 97)
                  + ((date_diff('day', date '1970-01-01', k.invoice_date) + 4194304)::hugeint << 74)
                  + (k.tie::hugeint << 3)
             else error('statement order: a sort value does not fit its bit field')
        end as order_base
    from sub_claims as k
    left join pct_texts as pt on pt.credit_pct = k.credit_pct
    cross join file_fields as ff  -- the subscription file's one row
),

sub_share_rows as (
    select
        k.partner_id as statement_partner_id,
        k.statement_no,
        -- + the export row (sort_row: the subscription file's rows come first, so it is the row itself)
        k.order_base + ((case when s.row_number between 0 and 4398046511102 then s.row_number
                              else error('statement order: a sort value does not fit its bit field') end)::hugeint << 32)
            as line_order,
        -- one concat() call, not a chain of ||: each || copies the row so far (at 10M rows the
        -- chain cost several times the single call). every part is non-null, so concat's skipping
        -- of nulls changes nothing.
        concat(k.head, csv_field(s.line_id), k.customer_part, coalesce(itf.field, ''), ',', s.currency, ',',
               fmt_money(s.amount_minor, s.digits), k.pct_part, coalesce(rt.text, ''), ',',
               fmt_money(s.share_minor, s.digits), k.payout_part,
               case when s.note is null then k.note_field else csv_field(concat_ws('; ', s.note, k.claim_note)) end,
               chr(10)) as row_text
    from sub_shares as s
    join sub_claim_texts as k on k.claim_day = s.claim_day
    left join item_fields as itf on itf.item = s.item
    left join rate_texts as rt on rt.rate = s.rate
)

select statement_partner_id, statement_no, line_order, row_text from sub_share_rows
union all
select statement_partner_id, statement_no, line_order, row_text from statement_other_rows
