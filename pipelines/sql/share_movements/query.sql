-- the month's share movements, one per credited charge (8.9M at 10M lines): a view over `credits`,
-- never copied (its readers, the balances, the statements and the ledger delta, each read it once).
-- signed from the partner's side (+ the company owes the partner), minor units of the line's own
-- currency. an earning becomes payable in the month of invoice_date + holding_days; `payable` is
-- that month <= the billing month, compared as dates (date + holding_days < the next month's first
-- day), which gives the same answer as comparing the yyyy-mm texts without formatting 9M dates.
-- run_params: the run's one row of parameters (compute.run_rules), since a view binds none.
select
    p.billing_month,
    'share:' || c.line_id || ':' || c.credit_key as movement_id,
    c.partner_id,
    'share' as kind,
    c.invoice_date as entry_date,
    c.currency,
    c.digits,
    c.share_minor as amount_minor,
    left(cast(c.invoice_date + p.holding_days as varchar), 7) as payable_month,  -- yyyy-mm of date + holding_days
    true as netted,
    c.source_file,
    c.line_id as record_id,
    c.customer_id,
    c.item,
    c.amount_minor as billed_minor,
    c.credit_pct,
    c.rate,
    null::varchar as refers_to,
    c.note,
    c.invoice_date + p.holding_days < p.next_month_start as payable,
    -- the statement's order within a day: the subscription export's rows, then the project
    -- export's, each in row order (source rank x 2^40 + row: one integer sort key). not ledger
    -- columns, so the ledger delta leaves them out
    (case when c.source = 'subscription' then 0 else 1 end)::bigint * 1099511627776 + c.row_number as sort_row,
    -- and, for a charge credited more than once to one partner, by credit key (as movement ids sort)
    c.credit_key as sort_credit,
    -- subscription or project: the statements write the month's subscription shares from sub_shares
    -- directly (sql/statement_lines) and only the project shares from here. not a ledger column
    c.source as share_source
from credits as c
cross join run_params as p
