"""Customer Master: multi-tenant customer master data for B2B wholesalers."""
