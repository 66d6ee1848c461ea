-- the month's adjustments (ids are unique across months; who entered each, for approval's
-- maker-checker rule). amount_minor: minor units of the adjustment's currency.
select
    $billing_month as billing_month, adjustment_id, partner_id, currency, amount_minor, entered_by
from month_adjustments
