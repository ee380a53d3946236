-- A tenant's own request budget, overriding WUTS_TENANT_RPS / WUTS_TENANT_BURST when set.
-- rate_rps = 0 means no budget for that tenant.
ALTER TABLE tenants
    ADD COLUMN rate_rps   double precision CHECK (rate_rps >= 0),
    ADD COLUMN rate_burst integer CHECK (rate_burst > 0);
