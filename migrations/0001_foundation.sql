-- Tenants, users (with their hashed API token) and device records.
-- Every tenant-owned row carries tenant_id so that every query can filter on it first.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Tenant names are unique regardless of case ("Acme" and "acme" are the same business).
CREATE UNIQUE INDEX tenants_name_key ON tenants (lower(name));

CREATE TABLE users (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email       text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'manager', 'user')),
    active      boolean NOT NULL DEFAULT true,
    -- SHA-256 of the bearer token; the token itself is never stored.
    token_hash  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_token_hash_key UNIQUE (token_hash),
    -- Lets devices reference (tenant_id, user_id) so a device can never belong to a user of
    -- another tenant.
    CONSTRAINT users_tenant_id_id_key UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX users_tenant_email_key ON users (tenant_id, lower(email));

CREATE TABLE devices (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL,
    name          text NOT NULL,
    status        text NOT NULL DEFAULT 'unpaired'
                  CHECK (status IN ('unpaired', 'pairing', 'connecting', 'connected',
                                    'disconnected', 'logged_out')),
    whatsapp_jid  text,
    last_seen     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX devices_tenant_user_idx ON devices (tenant_id, user_id);
