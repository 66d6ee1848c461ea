-- the month's earnings per partner, currency and kind, as computed: every credit's share, every
-- clawback, every referral fee paid. minor units of the currency, signed from the partner's side.
-- kept in the ledger (ledger_earnings): a restatement compares a locked month's earnings with
-- the same relation recomputed with today's reference data (pipelines/rules/restatement.py).
select partner_id, currency, 'share' as kind, sum(share_minor) as amount_minor
from credits
group by all
union all
select partner_id, currency, 'clawback', sum(clawback_minor)
from clawbacks
group by all
union all
select partner_id, fee_currency, 'referral_fee', sum(fee_minor)
from referral_fees
where report_code is null
group by all
