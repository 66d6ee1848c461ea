-- the line_reconciliation suite's frame: one row per usable billing line, minor units.
select line_id, currency, amount_minor as amount, partner_share + clawed_back as partner_shares, company_share
from line_totals
