-- lines that do not reconcile on their own: a charge that pays its partners more than it billed
-- or less than nothing, a refund that claws back more than it refunds or gives back, or any line
-- whose shares, clawbacks and company share do not add up to its amount. expected: none.
select count(*) as lines_failing
from line_totals
where partner_share + clawed_back + company_share <> amount_minor
    or (line_type = 'charge' and (partner_share > amount_minor or partner_share < 0))
    or (line_type <> 'charge' and (clawed_back < amount_minor or clawed_back > 0))
