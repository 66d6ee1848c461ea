"""`payouts sample`: a realistic demo input tree (reference data and monthly exports, with the bad rows
a real export has). Imports only core."""
