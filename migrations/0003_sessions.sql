-- Device sessions: what the operator wants (auto_connect), what happened last (last_error),
-- which node serves each device, and the per-device identity store (LID <-> phone number, names).

-- Whether the device should be connected: set when it pairs or is connected on request, cleared
-- by /disconnect and /logout. Startup restores exactly these devices.
ALTER TABLE devices ADD COLUMN auto_connect boolean NOT NULL DEFAULT false;
-- The device's own LID JID, once paired.
ALTER TABLE devices ADD COLUMN lid_jid text;
-- Why the session last stopped on its own (logged out, replaced, banned, outdated), for /status.
ALTER TABLE devices ADD COLUMN last_error text;

CREATE INDEX devices_auto_connect_idx ON devices (auto_connect) WHERE auto_connect;

-- Which node serves a device right now. The authority is a PostgreSQL advisory lock held by the
-- node's lock connection; this row only says where that node can be reached.
CREATE TABLE device_owners (
    device_id   uuid PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    node_id     text NOT NULL,
    since       timestamptz NOT NULL DEFAULT now()
);

-- Names a device has learned for WhatsApp users, keyed by the user's JID (phone-number JID or
-- LID JID, as the name arrived). LID <-> phone-number pairs themselves live with whatsapp-rust's
-- own mappings (wa_lid_mappings), which the identity store reads.
CREATE TABLE contact_names (
    device_id      uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    jid            text NOT NULL,
    full_name      text,
    first_name     text,
    push_name      text,
    business_name  text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, jid)
);
