-- Delivery wake-ups move out of the appending transaction. PostgreSQL holds one database-wide
-- lock from a notifying transaction's pre-commit to the end of its commit, so transactions that
-- NOTIFY commit one at a time, each waiting for its own WAL flush. The gateway now sends its
-- NOTIFY after the commit, from a connection of its own (`store::events::Wakeup`).
-- Every event checked its tenant's row (a foreign key locks the row it points to, FOR KEY SHARE),
-- so all the devices of a tenant contended for that one row. An event goes with its device, and
-- a device with its tenant (both ON DELETE CASCADE): the device's key is enough.
ALTER TABLE events DROP CONSTRAINT events_tenant_id_fkey;

CREATE OR REPLACE FUNCTION wuts_append_event(p_tenant uuid, p_device uuid, p_id uuid, p_event text,
                                             p_data jsonb)
RETURNS TABLE (user_id uuid, seq bigint, created_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_user uuid;
BEGIN
    SELECT d.user_id INTO v_user FROM devices d WHERE d.id = p_device AND d.tenant_id = p_tenant;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM wuts_append_device_event(p_tenant, p_device, v_user, p_id, p_event,
                                                        p_data);
END
$$;

-- The append itself, for a device whose row the caller already read (its user).
CREATE FUNCTION wuts_append_device_event(p_tenant uuid, p_device uuid, p_user uuid, p_id uuid,
                                         p_event text, p_data jsonb)
RETURNS TABLE (user_id uuid, seq bigint, created_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_created timestamptz;
BEGIN
    INSERT INTO event_streams AS s (device_id, last_seq) VALUES (p_device, 1)
    ON CONFLICT (device_id) DO UPDATE SET last_seq = s.last_seq + 1
    RETURNING s.last_seq INTO v_seq;
    INSERT INTO events AS e (id, tenant_id, device_id, user_id, seq, event, data)
    VALUES (p_id, p_tenant, p_device, p_user, v_seq, p_event, p_data)
    RETURNING e.created_at INTO v_created;
    INSERT INTO deliveries (webhook_id, device_id, event_id)
    SELECT w.id, p_device, p_id FROM webhooks w
    WHERE w.device_id = p_device
      AND ('*' = ANY (w.enabled_events) OR p_event = ANY (w.enabled_events));
    RETURN QUERY SELECT p_user, v_seq, v_created;
END
$$;

-- `contact.lid` is appended by a trigger inside whatsapp-rust's own writes, where the gateway
-- cannot wake the workers after the commit; those events are rare (a pair new to the device),
-- so the trigger still notifies at commit.
CREATE OR REPLACE FUNCTION wuts_lid_learned() RETURNS trigger
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
    IF EXISTS (SELECT 1 FROM webhooks w WHERE w.device_id = NEW.device_id) THEN
        PERFORM pg_notify('wuts_deliveries', '');
    END IF;
    RETURN NULL;
END
$$;

-- Records a delivery attempt and what follows it in one round trip, if the lease is still the
-- caller's (a worker whose lease ran out lost the delivery to another, which records its own).
-- `p_outcome`: delivered, retry (at `p_next_at`), failed (no attempts left), disabled (the
-- webhook is disabled with `p_reason`; its queue stays) or skipped (an event the webhook no
-- longer wants: it leaves the queue unsent and unrecorded). The webhook row is written only when
-- its state changes (the start or end of a run of failures, a disable). The delivery workers run
-- it with `synchronous_commit` off: a crash of the database server may forget the last outcomes,
-- and the events they describe are then delivered again (deliveries are at least once).
CREATE FUNCTION wuts_finish_delivery(p_position bigint, p_lease uuid, p_outcome text,
                                     p_next_at timestamptz, p_reason text,
                                     p_status_code integer, p_error text, p_duration_ms integer,
                                     p_was_failing boolean)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_webhook uuid;
    v_device uuid;
    v_event uuid;
    v_attempt integer;
BEGIN
    SELECT d.webhook_id, d.device_id, d.event_id, d.attempts + 1
    INTO v_webhook, v_device, v_event, v_attempt
    FROM deliveries d WHERE d.position = p_position AND d.lease = p_lease FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_outcome IN ('delivered', 'failed', 'skipped') THEN
        DELETE FROM deliveries WHERE position = p_position;
    ELSIF p_outcome = 'retry' THEN
        UPDATE deliveries SET attempts = v_attempt, next_attempt_at = p_next_at, lease = NULL,
            leased_until = NULL
        WHERE position = p_position;
    ELSIF p_outcome = 'disabled' THEN
        UPDATE deliveries SET attempts = 0, next_attempt_at = now(), lease = NULL,
            leased_until = NULL
        WHERE position = p_position;
        UPDATE webhooks SET enabled = false, disabled_reason = p_reason, updated_at = now()
        WHERE id = v_webhook;
    ELSE
        RAISE EXCEPTION 'unknown delivery outcome %', p_outcome;
    END IF;
    IF p_outcome = 'skipped' THEN
        RETURN true;
    END IF;
    -- `p_was_failing`: whether the webhook was in a run of failures when the delivery was
    -- claimed; the row is looked at only when this outcome may change that.
    IF p_outcome = 'delivered' AND p_was_failing THEN
        UPDATE webhooks SET failing_since = NULL WHERE id = v_webhook AND failing_since IS NOT NULL;
    ELSIF p_outcome <> 'delivered' AND NOT p_was_failing THEN
        UPDATE webhooks SET failing_since = now() WHERE id = v_webhook AND failing_since IS NULL;
    END IF;
    INSERT INTO delivery_attempts (webhook_id, device_id, event_id, attempt, status, status_code,
                                   error, duration_ms, next_attempt_at)
    VALUES (v_webhook, v_device, v_event, v_attempt,
            CASE p_outcome WHEN 'delivered' THEN 'delivered' WHEN 'retry' THEN 'pending'
                           ELSE 'failed' END,
            p_status_code, p_error, p_duration_ms,
            CASE WHEN p_outcome = 'retry' THEN p_next_at END);
    RETURN true;
END
$$;

-- Replaces a device's block-list snapshot and appends the `privacy.blocklist` event describing
-- the change, in one round trip, if the stored snapshot is the one the gateway computed the
-- change against (its hash is `p_expected`; NULL: none is stored). Answers `saved`, `stale`
-- (nothing written: the caller compares again under the row's lock) or `gone` (no such device).
CREATE FUNCTION wuts_save_blocklist(p_tenant uuid, p_device uuid, p_expected text, p_dhash text,
                                    p_items text[], p_event_id uuid, p_event text, p_data jsonb)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_user uuid;
    v_stored text;
BEGIN
    SELECT user_id INTO v_user FROM devices WHERE id = p_device AND tenant_id = p_tenant
    FOR KEY SHARE;
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;
    SELECT dhash INTO v_stored FROM blocklists WHERE device_id = p_device FOR UPDATE;
    IF FOUND THEN
        IF p_expected IS NULL OR v_stored <> p_expected THEN
            RETURN 'stale';
        END IF;
        UPDATE blocklists SET dhash = p_dhash, items = p_items, updated_at = now()
        WHERE device_id = p_device;
    ELSE
        IF p_expected IS NOT NULL THEN
            RETURN 'stale';
        END IF;
        INSERT INTO blocklists (device_id, dhash, items) VALUES (p_device, p_dhash, p_items)
        ON CONFLICT (device_id) DO NOTHING;
        IF NOT FOUND THEN
            RETURN 'stale';
        END IF;
    END IF;
    IF p_event IS NOT NULL THEN
        PERFORM wuts_append_device_event(p_tenant, p_device, v_user, p_event_id, p_event, p_data);
    END IF;
    RETURN 'saved';
END
$$;
