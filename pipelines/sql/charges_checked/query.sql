-- charges whose share can be computed, each with the reason it cannot (null: usable):
-- an attributed subscription charge or a project charge needs an agreement version in force on its
-- invoice_date, a rate card entry for its product family, and (to convert it to the program
-- currency for the tier base or the project band) a month-M fx rate for its currency.
-- joint credit over 100% is an error for the line.
-- a view (compute.run_rules says why): the month's end comes from run_params.
with charges as (
    -- the month's charges with their agreement version and fx rate (charge_terms)
    select * from charge_terms
),

credit_totals as (
    -- a subscription charge's credit is its customer's and invoice day's (credited_days)
    select customer_id, invoice_date, sum(credit_pct) as credit_total from credited_days group by all
),

versioned as (
    select
        c.*,
        t.credit_total,
        f.product_family is not null as family_in_version
    from charges as c
    left join credit_totals as t
        on c.source = 'subscription' and t.customer_id = c.customer_id and t.invoice_date = c.invoice_date
    left join (select distinct version, product_family from sub_base_rates) as f
        on f.version = c.version and f.product_family = c.product_family
),

checked as (
    select
        *,
        -- only lines that pay a partner need an agreement and a conversion
        source = 'project' or credit_total is not null as pays_partner
    from versioned
)

select
    * exclude (pays_partner, family_in_version),
    case
        when credit_total > 100 then 'credit_over_100'
        when pays_partner and version is null then 'no_agreement'
        when pays_partner and source = 'subscription' and not family_in_version then 'unknown_product_family'
        when pays_partner and fx_rate is null and (source = 'subscription' or engagement_type = 'partner_led')
            then 'missing_fx_rate'
    end as reason_code,
    case
        when credit_total > 100 then 'approved claims credit ' || credit_total || '% of customer ' || customer_id || ' (over 100%)'
        when pays_partner and version is null then 'no agreement version is in force on ' || invoice_date
        when pays_partner and source = 'subscription' and not family_in_version
            then 'product_family ' || product_family || ' is not in the rate card in force on ' || invoice_date
        when pays_partner and fx_rate is null and (source = 'subscription' or engagement_type = 'partner_led')
            then 'no fx rate for ' || currency || ' on or before ' || (select month_end from run_params) || ' to convert this line to the program currency'
    end as message
from checked
