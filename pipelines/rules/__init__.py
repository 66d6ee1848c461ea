"""The payout rules of SPEC section 2: the relations declared under sql/ (one folder each, the query
beside its declaration), the runner that builds them in dependency order, and the little Python that
needs exact rational arithmetic (tier splits, balances). Imports core and ledger."""
