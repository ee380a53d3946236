-- Answers to requests that carried an `Idempotency-Key`, so that a client's retry (on any gateway
-- node) is answered again instead of done twice. A row is a claim while `completed_at` is NULL
-- (the first request is being answered), then the stored answer, for 24 hours.
--
-- Nothing here can be read back without the key the client sent: the row is named by a SHA-256
-- of the scope and the key, the request by a SHA-256 fingerprint (never the request itself), and
-- the answer (which may carry a new user's token) is sealed under a secret derived from the key.
CREATE TABLE idempotency_keys (
    key_hash     bytea PRIMARY KEY CHECK (length(key_hash) = 32),
    -- The tenant whose callers share the key's scope; NULL for the master-token scope. Deleting
    -- a tenant forgets its answers.
    tenant_id    uuid REFERENCES tenants (id) ON DELETE CASCADE,
    fingerprint  bytea NOT NULL CHECK (length(fingerprint) = 32),
    -- The request answering under this claim: only it may complete or release the row.
    claim_id     uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    status       smallint,
    answer       bytea,
    CHECK ((completed_at IS NULL) = (answer IS NULL) AND (answer IS NULL) = (status IS NULL))
);

-- Expiry and pruning look rows up by age.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
-- A deleted tenant's rows are found by the cascade.
CREATE INDEX idempotency_keys_tenant_id ON idempotency_keys (tenant_id) WHERE tenant_id IS NOT NULL;
