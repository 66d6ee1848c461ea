"""The ledger: what carries from month to month (balances, charges for later refunds, tier bases,
pending earnings, used ids), and the output root it lives in: one command at a time, each run's
staging folder. Imports only core."""
