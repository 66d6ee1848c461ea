-- the delivering partner's share of each usable project charge (credit 100%; tiers do not apply).
-- partner_led: the one band whose up_to is the first at or above contract_value (converted to the
--   program currency at month m's rate; whole-base) + level_uplift[level on invoice_date];
-- company_led: company_led_rate; joint: partner_contribution_pct / 100. clamped to [0, 1].
-- share_minor: minor units of the line's currency, rounded half away from zero.
with charges_p as (
    select * from charges where source = 'project'
),

levelled as (
    select c.*, coalesce(lv.level, 'registered') as level
    from charges_p as c
    left join level_intervals as lv
        on lv.partner_id = c.partner_id and c.invoice_date >= lv.effective_from
        and (lv.next_from is null or c.invoice_date < lv.next_from)
),

valued as (
    select
        l.*,
        -- contract value in program currency, major units
        l.contract_value_minor::decimal(38, 0) * l.fx_rate
            * (case l.digits when 0 then 1 when 1 then 0.1 when 2 then 0.01 when 3 then 0.001 else 0.0001 end)::decimal(5, 4)
            as contract_value_program
    from levelled as l
),

rated as (
    select
        v.*,
        case v.engagement_type
            when 'partner_led' then
                (select b.rate from project_bands as b
                 where b.version = v.version and (b.up_to is null or b.up_to >= v.contract_value_program)
                 order by b.band_no limit 1)
                + (select u.uplift from level_uplifts as u where u.version = v.version and u.level = v.level)
            when 'company_led' then (select t.company_led_rate from project_terms as t where t.version = v.version)
            when 'joint' then v.partner_contribution_pct * 0.01::decimal(3, 2)
        end as raw_rate
    from valued as v
)

select
    line_id,
    partner_id as credit_key,
    null::varchar as claim_id,
    partner_id,
    engagement_type,
    100::decimal(9, 4) as credit_pct,
    level,
    version,
    invoice_date,
    customer_id,
    item,
    currency,
    digits,
    amount_minor,
    source_file,
    row_number,
    greatest(0, least(1, raw_rate))::decimal(9, 6) as rate,
    round(amount_minor::decimal(38, 0) * greatest(0, least(1, raw_rate))::decimal(9, 6))::hugeint as share_minor
from rated
