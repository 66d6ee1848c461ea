-- totals per billing currency computed from the rules' own tables, independently of line_totals
-- (which summary.json's control totals read): the usable lines' amounts, every credit's share,
-- every clawback. minor units of the currency; refunds and clawbacks negative.
with billed as (
    select currency, sum(amount_minor) as total
    from (select currency, amount_minor from charge_lines union all select currency, amount_minor from refunds)
    group by all
),

shared as (
    select currency, sum(share_minor) as total from credits group by all
),

clawed as (
    select currency, sum(clawback_minor) as total from clawbacks group by all
)

select
    b.currency,
    b.total as billed_lines,
    coalesce(s.total, 0) as partner_share_credits,
    coalesce(c.total, 0) as clawed_back_clawbacks
from billed as b
left join shared as s on s.currency = b.currency
left join clawed as c on c.currency = b.currency
order by b.currency
