-- the month's usable refunds and chargebacks (lines whose line_type is not a charge: tens of
-- thousands of rows), as a table, so refunds_checked's joins know their size: with the same rows
-- as a CTE, DuckDB estimated 2M of them against under 1M charges and built the semi join's hash
-- table on the 10M charges (1.8 s of the step's 2.0 s at 10M lines)
select * from lines where line_type <> 'charge'
