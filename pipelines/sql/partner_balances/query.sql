-- every partner with a movement or a non-zero balance, in its payout currency (exact minor digits).
-- signs from the partner's side: earnings and referral_fees +, clawbacks and fees -, adjustments
-- (and restatements) either way.
-- closing_balance = opening_balance + earnings + clawbacks + referral_fees + fees + adjustments - gross_paid;
-- pending is earnings still in the holding period (not in the balance yet).
select
    safe_text(partner_id) as partner_id,
    payout_currency,
    fmt_money(opening_minor, payout_digits) as opening_balance,
    fmt_money(earnings_minor, payout_digits) as earnings,
    fmt_money(clawbacks_minor, payout_digits) as clawbacks,
    fmt_money(referral_fees_minor, payout_digits) as referral_fees,
    fmt_money(fees_minor, payout_digits) as fees,
    fmt_money(adjustments_minor, payout_digits) as adjustments,
    fmt_money(pending_minor, payout_digits) as pending,
    fmt_money(gross_minor, payout_digits) as gross_paid,
    fmt_money(withholding_minor, payout_digits) as withholding,
    fmt_money(net_minor, payout_digits) as net_paid,
    fmt_money(closing_minor, payout_digits) as closing_balance,
    status
from partner_results
order by partner_results.partner_id
