-- each credited partner's share of each usable subscription charge.
-- rate = base_rates[family][engagement] + level_uplift[level on invoice_date]
--        + after_first_year_uplift (invoice_date >= subscription_start + 12 months) + tier uplift,
--        clamped to [0, 1]; 0 from subscription_start + max_months months on.
-- tier base: the partner's credited subscription charges in program currency (major units, exact):
-- the ledger's earlier months (lifetime, or this calendar year) plus this month's in
-- (invoice_date, line_id) order. refunds do not lower it.
-- share_minor: minor units of the line's currency, rounded half away from zero once.
-- the tier base before each credit: its day's base (tier_day_bases), or on the few days whose range
-- crosses a step, its running base (tier_running_bases).
-- a charge whose tier base crosses a step gets crosses_step = true and is split exactly in python.
-- only a credit of such a day can cross a step: on any other day no step lies inside the day's
-- range, so every credit's range (from the day's starting base) lies in the bracket of that base
-- (tier_day_bases.first_step). the credited amount in program currency, which only a crossing needs,
-- is tier_running_bases' (a few hundred thousand rows), not computed again for every credit here.
with claims as (
    -- each claim of credited_days (a row per customer, day and claim: a few thousand rows) with its
    -- partner's level on that day, looked up once per claim rather than once per credit
    select
        c.*,
        coalesce(lv.level, 'registered') as level
    from credited_days as c
    left join level_intervals as lv
        on lv.partner_id = c.partner_id and c.invoice_date >= lv.effective_from
        and (lv.next_from is null or c.invoice_date < lv.next_from)
),

levelled as (
    -- every usable subscription charge with each partner credited on its customer's invoice day
    select
        l.line_id,
        c.claim_day,
        c.credit_key,
        c.claim_id,
        c.partner_id,
        c.engagement_type,
        c.credit_pct,
        c.level,
        l.invoice_date,
        l.subscription_start,
        l.product_family,
        l.currency,
        l.digits,
        l.amount_minor,
        l.version,
        l.fx_rate,
        l.row_number,
        l.source_file,
        l.customer_id
    from charges_fx as l  -- the usable charges with version and fx rate (compute.run_rules)
    join claims as c on c.customer_id = l.customer_id and c.invoice_date = l.invoice_date
    where l.source = 'subscription'
),

rated as (
    select
        l.*,
        b.rate as base_rate,
        u.uplift as level_uplift,
        case when l.invoice_date >= cast(l.subscription_start + interval 12 month as date)
             then t.after_first_year_uplift else 0 end as first_year_uplift,
        t.max_months is not null
            and l.invoice_date >= cast(l.subscription_start + to_months(t.max_months) as date) as past_max_months
    from levelled as l
    join sub_base_rates as b
        on b.version = l.version and b.product_family = l.product_family and b.engagement_type = l.engagement_type
    join level_uplifts as u on u.version = l.version and u.level = l.level
    join sub_terms as t on t.version = l.version
),

based as (
    select
        r.*,
        x.row_number is not null as on_crossing_day,
        coalesce(x.base_before, d.day_base) as base_before,
        x.credited_program,  -- program currency, major units; null off the crossing days
        d.first_step as day_first_step
    from rated as r
    join tier_day_bases as d on d.partner_id = r.partner_id and d.invoice_date = r.invoice_date
    left join tier_running_bases as x on x.row_number = r.row_number and x.claim_day = r.claim_day
),

steps as (
    -- each version's tier steps as two parallel lists (a handful of values), to avoid a join per line
    select
        version,
        list(above order by step_no) as aboves,
        list(uplift order by step_no) as uplifts
    from tier_steps
    group by version
),

bracketed as (
    select
        b.*,
        b.base_before + b.credited_program as base_after,
        -- the step the first part lies in, and the step the last part lies in (0 = below every step):
        -- off the crossing days, both the bracket of the day's starting base
        case when b.on_crossing_day then coalesce(len(list_filter(s.aboves, lambda a: a <= b.base_before)), 0)
             else b.day_first_step end as first_step,
        case when b.on_crossing_day
             then coalesce(len(list_filter(s.aboves, lambda a: a < b.base_before + b.credited_program)), 0)
             else b.day_first_step end as last_step,
        s.uplifts
    from based as b
    left join steps as s on s.version = b.version
),

single_rate as (
    select
        b.*,
        b.base_rate + b.level_uplift + b.first_year_uplift as rate_before_tier,
        case when b.first_step = 0 then 0 else b.uplifts[b.first_step] end as tier_uplift
    from bracketed as b
)

-- one row per credited charge (8.9M at 10M lines), kept in a temp table (only this step's relations
-- read it, and a temp table is not compressed and written to the work file): every column costs time
-- to write, so the claim's and the day's columns (credit_key, partner_id, engagement_type,
-- credit_pct, customer_id, invoice_date) are one integer, claim_day, which the view `credits` joins
-- back from credited_days (compute._credits; a few thousand rows), and the tier details that
-- `compute._credits` needs to split a share across steps are one text on the few rows that cross a
-- step (null elsewhere): version|fx_rate|base_before|base_after|rate_before_tier, exact decimals as
-- text. the source file is the subscription file on every row (the view `credits` names it). the
-- ledger's tier base is tier_day_bases' day totals (outputs.write_ledger_delta), not a column here.
select
    line_id,
    claim_day,
    item,
    currency,
    digits,
    amount_minor,
    row_number,
    case when crosses_step
         then concat_ws('|', version, fx_rate, base_before, base_after, rate_before_tier) end as tier_crossing,
    rate,
    -- minor units x credit% x rate, rounded half away from zero, exactly (macros.sql)
    credited_share(amount_minor, credit_pct, rate) as share_minor,
    null::varchar as note  -- set by compute._credits on the rows split across tier steps
from (
select
    *,
    on_crossing_day and last_step > first_step and not past_max_months and credited_program > 0 as crosses_step,
    case when past_max_months then 0
         else greatest(0, least(1, rate_before_tier + tier_uplift)) end::decimal(9, 6) as rate,
    product_family as item
from single_rate
)
