-- Events: each device's ordered stream (an outbox), its webhook, and the delivery queue.

-- A block-list change is now an event computed against the snapshot, in the same transaction:
-- the snapshot must survive a crash, or the next connect would report every entry as new.
ALTER TABLE blocklists SET LOGGED;

-- Each device's last event number. Taking the next one locks the row until the transaction
-- ends, so numbers are gapless and in commit order per device.
CREATE TABLE event_streams (
    device_id   uuid PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    last_seq    bigint NOT NULL
);

CREATE TABLE events (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL,
    seq         bigint NOT NULL,
    event       text NOT NULL,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, seq)
);
CREATE INDEX events_created_at ON events (created_at);

-- One webhook per device. The secret is sealed with the store key when one is configured; the
-- previous secret keeps signing alongside the new one for a while after a rotation.
CREATE TABLE webhooks (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id        uuid NOT NULL UNIQUE REFERENCES devices (id) ON DELETE CASCADE,
    url              text NOT NULL,
    enabled_events   text[] NOT NULL,
    enabled          boolean NOT NULL DEFAULT true,
    retry_attempts   integer NOT NULL,
    timeout_secs     integer NOT NULL,
    secret           bytea NOT NULL,
    previous_secret  bytea,
    previous_until   timestamptz,
    headers          jsonb NOT NULL DEFAULT '{}',
    disabled_reason  text,
    -- The first failure of the current run of failures (cleared by a success).
    failing_since    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The queue: one row per event to deliver to a device's webhook, in `position` order per
-- device. A worker leases the head of a device's queue (`leased_until`), so one device has one
-- attempt in flight whichever node delivers.
CREATE TABLE deliveries (
    position         bigserial PRIMARY KEY,
    webhook_id       uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    device_id        uuid NOT NULL,
    event_id         uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    leased_until     timestamptz,
    -- Names the worker holding the lease: only it may record the attempt's outcome.
    lease            uuid,
    queued_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_device_order ON deliveries (device_id, position);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at);

-- Every attempt, as `GET /webhook/deliveries` lists them.
CREATE TABLE delivery_attempts (
    id               bigserial PRIMARY KEY,
    webhook_id       uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    device_id        uuid NOT NULL,
    event_id         uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    -- delivered, pending (another attempt follows) or failed (given up).
    status           text NOT NULL,
    status_code      integer,
    error            text,
    duration_ms      integer NOT NULL,
    attempted_at     timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz
);
CREATE INDEX delivery_attempts_webhook ON delivery_attempts (webhook_id, id DESC);

-- A URL a user saved to apply, with every event, to each device it creates from now on, and the
-- secret (sealed, as webhook secrets are) those webhooks will sign with.
ALTER TABLE users ADD COLUMN pending_webhook_url text;
ALTER TABLE users ADD COLUMN pending_webhook_secret bytea;

-- Appends an event to a device's stream: the next `seq` (the stream row stays locked until
-- the transaction ends, so numbers are gapless and in commit order), the event, its place in
-- the webhook's queue, and a wake-up for the delivery workers (sent at commit). The gateway's
-- code and the triggers below both append through it. Answers no row when the device is gone.
CREATE FUNCTION wuts_append_event(p_tenant uuid, p_device uuid, p_id uuid, p_event text,
                                  p_data jsonb)
RETURNS TABLE (user_id uuid, seq bigint, created_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_user uuid;
    v_seq bigint;
    v_created timestamptz;
BEGIN
    SELECT d.user_id INTO v_user FROM devices d WHERE d.id = p_device AND d.tenant_id = p_tenant;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO event_streams AS s (device_id, last_seq) VALUES (p_device, 1)
    ON CONFLICT (device_id) DO UPDATE SET last_seq = s.last_seq + 1
    RETURNING s.last_seq INTO v_seq;
    INSERT INTO events AS e (id, tenant_id, device_id, user_id, seq, event, data)
    VALUES (p_id, p_tenant, p_device, v_user, v_seq, p_event, p_data)
    RETURNING e.created_at INTO v_created;
    INSERT INTO deliveries (webhook_id, device_id, event_id)
    SELECT w.id, p_device, p_id FROM webhooks w
    WHERE w.device_id = p_device
      AND ('*' = ANY (w.enabled_events) OR p_event = ANY (w.enabled_events));
    IF FOUND THEN
        PERFORM pg_notify('wuts_deliveries', p_device::text);
    END IF;
    RETURN QUERY SELECT v_user, v_seq, v_created;
END
$$;

-- `contact.lid`: whatsapp-rust stores every LID/phone-number pair it learns in wa_lid_mappings;
-- a pair new to the device (or a LID that moved to another number) is an event, in the same
-- transaction as the write. The device's own pair, learned at pairing, is not.
CREATE FUNCTION wuts_lid_learned() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant uuid;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.pn = NEW.pn THEN
        RETURN NULL;
    END IF;
    IF NEW.learning_source = 'pairing' THEN
        RETURN NULL;
    END IF;
    SELECT tenant_id INTO v_tenant FROM devices WHERE id = NEW.device_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM wuts_append_event(v_tenant, NEW.device_id, gen_random_uuid(), 'contact.lid',
        jsonb_build_object(
            'lid_jid', NEW.lid || '@lid',
            'phone_number', NEW.pn,
            'source', CASE
                WHEN NEW.learning_source IN ('usync', 'recipient_latest_lid', 'device_notification')
                    THEN 'usync'
                WHEN NEW.learning_source IN ('peer_pn_message', 'peer_lid_message') THEN 'message'
                WHEN NEW.learning_source LIKE 'migration_sync%' THEN 'app_state'
                WHEN NEW.learning_source LIKE 'blocklist%' THEN 'blocklist'
                ELSE 'other' END));
    RETURN NULL;
END
$$;

CREATE TRIGGER wa_lid_mappings_events AFTER INSERT OR UPDATE OF pn ON wa_lid_mappings
FOR EACH ROW EXECUTE FUNCTION wuts_lid_learned();

-- What the device last knew of each group it is in, to report what changed while it was not
-- connected (a restart, a crash, a drop): compared with WhatsApp's participating groups at
-- every connect. `group_syncs` marks a device whose groups were read once (the baseline).
CREATE TABLE group_snapshots (
    device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    group_jid   text NOT NULL,
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, group_jid)
);
CREATE TABLE group_syncs (
    device_id   uuid PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    synced_at   timestamptz NOT NULL DEFAULT now()
);
