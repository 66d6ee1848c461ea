-- refunds and chargebacks, each checked against its original charge (this month's or any earlier
-- month's, from the same billing file). refunds of one charge are applied in (invoice_date, line_id)
-- order; one that would take the refunds past the charge is an exception, and the ones after it
-- still count against what is left. amounts are minor units; refunds are negative.
with recursive this_month_refunds as (
    select * from month_refunds  -- lines that are not charges (sql/month_refunds)
),

originals as (
    -- only the charges some refund refers to: a semi join builds its hash table on the month's
    -- refunds (70K at 10M lines) and probes the charges. the left join below, given all charges,
    -- built it on the 10M charges (at 10M lines the step took 2.4 s; now 1.0 s)
    select o.line_id, o.source, o.currency, o.amount_minor, o.invoice_date
    from (
        select line_id, source, currency, amount_minor, invoice_date from charge_lines  -- usable charges
        union all
        select line_id, source, currency, amount_minor, invoice_date
        from ledger.billing_lines
        where billing_month < $billing_month and line_type = 'charge'
    ) as o
    semi join this_month_refunds as r on r.refers_to_line_id = o.line_id and r.source = o.source
),

refunded_before as (
    -- amount (as a positive number) already refunded in earlier months
    select refers_to_line_id, -sum(amount_minor) as refunded_minor
    from ledger.refunds
    where billing_month < $billing_month
    group by refers_to_line_id
),

matched as (
    select
        r.*,
        o.line_id is not null as original_found,
        o.currency as original_currency,
        o.amount_minor as original_minor,
        coalesce(b.refunded_minor, 0) as refunded_before_minor
    from this_month_refunds as r
    left join originals as o on o.line_id = r.refers_to_line_id and o.source = r.source
    left join refunded_before as b on b.refers_to_line_id = r.refers_to_line_id
),

eligible as (
    select
        *,
        row_number() over (partition by refers_to_line_id order by invoice_date, line_id) as refund_seq
    from matched
    where original_found and currency = original_currency
),

-- walk each original's refunds in order, accepting a refund only while the total stays within the charge
walk as (
    select
        refers_to_line_id,
        refund_seq,
        line_id,
        case when -amount_minor + refunded_before_minor <= original_minor then true else false end as accepted,
        case when -amount_minor + refunded_before_minor <= original_minor
             then -amount_minor + refunded_before_minor else refunded_before_minor end as refunded_total
    from eligible
    where refund_seq = 1
    union all
    select
        m.refers_to_line_id,
        m.refund_seq,
        m.line_id,
        -m.amount_minor + w.refunded_total <= m.original_minor,
        case when -m.amount_minor + w.refunded_total <= m.original_minor
             then -m.amount_minor + w.refunded_total else w.refunded_total end
    from walk as w
    join eligible as m on m.refers_to_line_id = w.refers_to_line_id and m.refund_seq = w.refund_seq + 1
)

select
    m.* exclude (original_found, refunded_before_minor),
    case
        when not m.original_found then 'refund_unknown_original'
        when m.currency <> m.original_currency then 'refund_currency_mismatch'
        when not w.accepted then 'refund_exceeds_original'
    end as reason_code,
    case
        when not m.original_found then m.line_type || ' refers to ' || m.refers_to_line_id || ', which is not a known charge in ' || m.source || '_billing'
        when m.currency <> m.original_currency then m.line_type || ' in ' || m.currency || ' refers to a charge in ' || m.original_currency
        when not w.accepted then m.line_type || ' of ' || m.amount_minor || ' minor units would take the refunds of ' || m.refers_to_line_id || ' past its amount of ' || m.original_minor
    end as message
from matched as m
left join walk as w on w.line_id = m.line_id and w.refers_to_line_id = m.refers_to_line_id
