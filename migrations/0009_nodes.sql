-- Several gateway nodes on one database: the node registry, device leases with an epoch, and the
-- fence that keeps a node that lost a device from writing for it.

-- One row per running gateway process. `id` is also the `application_name` (prefixed `wuts:`) of
-- every connection the node opens, so the database can tell which node a write comes from, and a
-- node declared dead can have all its connections closed. `lock_pid` is the backend of the
-- node's lock connection (the one holding its devices' advisory locks): when that backend is
-- gone, so are the locks.
CREATE TABLE nodes (
    id            text PRIMARY KEY,
    url           text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    draining      boolean NOT NULL DEFAULT false,
    lock_pid      integer
);

-- The lease of a device: which node serves it (`node_id`, NULL when nobody does), the epoch
-- (fencing token, incremented at each takeover), and, while a node hands the device over, the
-- node it goes to. The row outlives its owner so that the epoch only ever grows.
ALTER TABLE device_owners ALTER COLUMN node_id DROP NOT NULL;
ALTER TABLE device_owners ADD COLUMN epoch bigint NOT NULL DEFAULT 1;
ALTER TABLE device_owners ADD COLUMN handoff_to text;
CREATE INDEX device_owners_node_idx ON device_owners (node_id);

-- The fence. A write for a device, from a gateway node's connection, while another node holds
-- the device's lease is refused. The lease row is read `FOR SHARE`, so a takeover (which updates
-- the row) waits for the writes under way and every write after it sees the new owner.
-- Connections that are not a node's (migrations, `wuts` commands) are not fenced. Cascades from
-- a deleted device or tenant (trigger depth > 1) are not either: the rows go with their device.
CREATE FUNCTION wuts_fence(p_device uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_me text := current_setting('application_name');
    v_owner text;
BEGIN
    IF left(v_me, 5) <> 'wuts:' THEN
        RETURN;
    END IF;
    SELECT o.node_id INTO v_owner FROM device_owners o WHERE o.device_id = p_device FOR SHARE;
    IF v_owner IS NOT NULL AND 'wuts:' || v_owner <> v_me THEN
        RAISE EXCEPTION 'device % is served by gateway node %', p_device, v_owner
            USING ERRCODE = 'WU001';
    END IF;
END
$$;

CREATE FUNCTION wuts_fence_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() > 1 THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM wuts_fence(OLD.device_id);
        RETURN OLD;
    END IF;
    PERFORM wuts_fence(NEW.device_id);
    RETURN NEW;
END
$$;

-- Every table whatsapp-rust writes for a device (its keys and device record), the block-list
-- snapshot, the group snapshots and the names a device learned.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['wa_devices', 'wa_identities', 'wa_sessions', 'wa_prekeys',
        'wa_signed_prekeys', 'wa_sender_keys', 'wa_app_sync_keys', 'wa_app_state_versions',
        'wa_app_state_mutation_macs', 'wa_sender_key_devices', 'wa_lid_mappings', 'wa_pn_lids',
        'wa_base_keys', 'wa_device_lists', 'wa_group_metadata', 'wa_tc_tokens',
        'wa_sent_messages', 'wa_pending_inbound', 'wa_msg_secrets', 'blocklists',
        'group_snapshots', 'contact_names']
    LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION wuts_fence_row()', t || '_fence', t);
    END LOOP;
END
$$;

-- The session columns of a device (status, whether it should be connected, its account, the
-- last error) are written only by its session, so only by the lease holder: a node that lost the
-- device cannot mark it disconnected (a "replaced" stream error it reads when it wakes up) over
-- the new owner's connection.
CREATE FUNCTION wuts_fence_session() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM wuts_fence(NEW.id);
    RETURN NEW;
END
$$;

CREATE TRIGGER devices_session_fence BEFORE UPDATE OF status, auto_connect, last_error ON devices
FOR EACH ROW EXECUTE FUNCTION wuts_fence_session();

-- Events a device's session produces are its owner's writes too. A webhook test is not: any node
-- may send one.
CREATE OR REPLACE FUNCTION wuts_append_device_event(p_tenant uuid, p_device uuid, p_user uuid,
                                                    p_id uuid, p_event text, p_data jsonb)
RETURNS TABLE (user_id uuid, seq bigint, created_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_created timestamptz;
BEGIN
    IF p_event <> 'webhook.test' THEN
        PERFORM wuts_fence(p_device);
    END IF;
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

-- When the lease holder's session last reached WhatsApp (NULL while it is connecting): a node
-- handing devices over moves the next one only once the previous one is connected again.
ALTER TABLE device_owners ADD COLUMN connected_at timestamptz;
