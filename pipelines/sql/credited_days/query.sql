-- attribution of subscription charges, decided once per (customer_id, invoice_date): a charge is
-- credited to the rows of its customer and invoice day here.
-- 1. candidates: the customer's approved claims valid that day (valid_from..valid_to, both inclusive);
-- 2. only the candidates of the best source: partner_of_record > deal_registration > referral_link;
-- 3. a kept claim with credit_pct 100 wins alone (earliest valid_from, then smallest claim_id);
--    otherwise every kept claim is credited its credit_pct (joint credit);
-- 4. no candidate: no row here, the day's charges are unattributed and the company keeps them.
with charge_days as (
    -- attribution depends only on (customer_id, invoice_date): decide it once per distinct pair
    select distinct customer_id, invoice_date
    from lines
    where source = 'subscription' and line_type = 'charge'
),

candidates as (
    select
        c.customer_id,
        c.invoice_date,
        a.claim_id,
        a.partner_id,
        a.source_rank,
        a.engagement_type,
        a.credit_pct,
        a.valid_from
    from charge_days as c
    join attributions as a
        on a.customer_id = c.customer_id
        and a.status = 'approved'
        and c.invoice_date >= a.valid_from
        and (a.valid_to is null or c.invoice_date <= a.valid_to)
),

best_source as (
    select *, min(source_rank) over (partition by customer_id, invoice_date) as best_rank
    from candidates
),

kept as (
    select
        *,
        bool_or(credit_pct = 100) over (partition by customer_id, invoice_date) as has_full_credit,
        row_number() over (
            partition by customer_id, invoice_date order by (credit_pct = 100) desc, valid_from, claim_id
        ) as full_credit_pick
    from best_source
    where source_rank = best_rank
),

credited as (
    select customer_id, invoice_date, claim_id, partner_id, engagement_type, credit_pct
    from kept
    where not has_full_credit or full_credit_pick = 1
)

-- claim_day: the row's number in (customer_id, invoice_date, claim_id) order, a key of this small
-- table. sub_shares keeps it instead of the claim's and the day's columns (credit_key, partner_id,
-- engagement_type, credit_pct, customer_id, invoice_date), which the view `credits` joins back: at
-- 10M lines that is six columns fewer to write for 8.9M rows (compute.run_rules)
select customer_id, invoice_date, claim_id as credit_key, claim_id, partner_id, engagement_type, credit_pct,
       row_number() over (order by customer_id, invoice_date, claim_id)::integer as claim_day
from credited
