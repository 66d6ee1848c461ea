-- the new_values suite's frame: each currency and product family of the month's usable lines, and
-- whether an earlier month's lines had it (first_month: the ledger has no earlier month).
with this_month as (
    select distinct 'currency' as kind, currency as value from charge_lines
    union
    select distinct 'product_family', item from charge_lines where source = 'subscription'
),

before as (
    select distinct 'currency' as kind, currency as value from ledger.billing_lines
    where billing_month < $billing_month
    union
    select distinct 'product_family', item from ledger.billing_lines
    where billing_month < $billing_month and source = 'subscription'
)

select
    t.kind,
    t.value,
    b.value is not null as seen_before,
    not exists (select 1 from ledger.months where billing_month < $billing_month) as first_month
from this_month as t
left join before as b on b.kind = t.kind and b.value = t.value
order by t.kind, t.value
