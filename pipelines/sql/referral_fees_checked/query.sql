-- referral events of the month with what they earn. qualified_lead and successful_delivery pay the
-- fixed amount (program currency); signed_agreement pays pct_of_first_year_value x
-- first_year_contract_value (event currency), only if the same partner had a qualified_lead for the
-- same deal at most signed_within_days days before. each (deal_id, event_type) pays once, ever.
-- reason_code: a quarantined event (no agreement, event_id reused); report_code: reported, not paid.
-- fee_minor: minor units of fee_currency, rounded half away from zero.
with events as (
    select
        e.*,
        a.version,
        lg.event_id is not null as id_used_before,
        row_number() over (partition by e.event_id order by e.row_number) as id_rank
    from referral_events as e
    -- every date here lies in month m (checked at ingest): one equi-join on a 31-row table
    left join day_versions as a on a.day = e.event_date
    left join (select distinct event_id from ledger.referral_events where billing_month < $billing_month) as lg
        on lg.event_id = e.event_id
),

usable as (
    select * from events where version is not null and not id_used_before and id_rank = 1
),

leads as (
    select partner_id, deal_id, event_date from usable where event_type = 'qualified_lead'
    union all
    select partner_id, deal_id, event_date
    from ledger.referral_events
    where billing_month < $billing_month and event_type = 'qualified_lead'
),

qualified as (
    select
        u.*,
        t.signed_within_days,
        u.event_type <> 'signed_agreement' or exists (
            select 1 from leads as l
            where l.partner_id = u.partner_id and l.deal_id = u.deal_id
              and l.event_date <= u.event_date
              and u.event_date - l.event_date <= t.signed_within_days
        ) as has_lead
    from usable as u
    join referral_terms as t on t.version = u.version
),

ranked as (
    select
        q.*,
        p.deal_id is not null as paid_before,
        row_number() over (
            partition by q.deal_id, q.event_type, q.has_lead order by q.event_date, q.event_id
        ) as pay_rank
    from qualified as q
    left join (
        select distinct deal_id, event_type from ledger.referral_events
        where billing_month < $billing_month and paid
    ) as p on p.deal_id = q.deal_id and p.event_type = q.event_type
)

select
    e.row_number,
    e.event_id,
    e.event_id as record_id,
    $referral_events_file as source_file,
    e.partner_id,
    e.customer_id,
    e.deal_id,
    e.event_type,
    e.event_date,
    case
        when e.version is null then 'no_agreement'
        when e.id_used_before or e.id_rank > 1 then 'duplicate_id'
    end as reason_code,
    case
        when e.version is null then 'no agreement version is in force on ' || e.event_date
        when e.id_used_before then 'event_id ' || e.event_id || ' was already used in an earlier month'
        when e.id_rank > 1 then 'event_id ' || e.event_id || ' was already used on an earlier row this month'
    end as message,
    case
        when r.event_id is null then null
        when not r.has_lead then 'signed_agreement_without_lead'
        when r.paid_before or r.pay_rank > 1 then 'repeated_referral_event'
    end as report_code,
    case
        when r.event_id is null then null
        when not r.has_lead then 'signed_agreement for deal ' || e.deal_id || ' without a qualified_lead from ' || e.partner_id || ' in the ' || r.signed_within_days || ' days before: earns nothing'
        when r.paid_before then e.event_type || ' for deal ' || e.deal_id || ' was already paid in an earlier month'
        when r.pay_rank > 1 then e.event_type || ' for deal ' || e.deal_id || ' was already paid earlier this month'
    end as report_message,
    case when e.event_type = 'signed_agreement' then e.currency else $program_currency end as fee_currency,
    case when e.event_type = 'signed_agreement' then e.digits else $program_digits end as fee_digits,
    e.first_year_value_minor,
    t.pct_of_first_year_value,
    case e.event_type
        when 'qualified_lead' then t.qualified_lead_minor
        when 'successful_delivery' then t.successful_delivery_minor
        else round(e.first_year_value_minor::decimal(38, 0) * t.pct_of_first_year_value)::hugeint
    end as fee_minor
from events as e
left join ranked as r on r.event_id = e.event_id and r.row_number = e.row_number
left join referral_terms as t on t.version = e.version
