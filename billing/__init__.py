"""Money for Quorum: rate cards, fees, the cost ledger, budgets and invoices (plain domain code)."""
