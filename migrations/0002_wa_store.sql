-- whatsapp-rust's persistent state, per gateway device: the device record (identity, noise and
-- pre-keys, account), Signal sessions and keys, app-state sync state, and the protocol caches
-- WhatsApp Web keeps (LID mappings, device lists, sender-key distribution, tokens).
-- Every table is keyed by the device first and cascades from `devices`, so deleting a device
-- erases its keys.

CREATE TABLE wa_devices (
    device_id   uuid PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    -- whatsapp-rust's Device, serialized with serde (JSON).
    data        bytea NOT NULL,
    -- The paired account's phone-number JID, copied out of `data`: NULL until paired.
    pn          text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE wa_identities (
    device_id  uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    address    text NOT NULL,
    key        bytea NOT NULL,
    PRIMARY KEY (device_id, address)
);

CREATE TABLE wa_sessions (
    device_id  uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    address    text NOT NULL,
    record     bytea NOT NULL,
    PRIMARY KEY (device_id, address)
);

CREATE TABLE wa_prekeys (
    device_id  uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    id         bigint NOT NULL,
    record     bytea NOT NULL,
    uploaded   boolean NOT NULL,
    PRIMARY KEY (device_id, id)
);

CREATE TABLE wa_signed_prekeys (
    device_id  uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    id         bigint NOT NULL,
    record     bytea NOT NULL,
    PRIMARY KEY (device_id, id)
);

CREATE TABLE wa_sender_keys (
    device_id  uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    address    text NOT NULL,
    record     bytea NOT NULL,
    PRIMARY KEY (device_id, address)
);

-- `seq` orders writes, so that the most recently written key is the "latest" one.
CREATE SEQUENCE wa_app_sync_keys_seq;
CREATE TABLE wa_app_sync_keys (
    device_id    uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    key_id       bytea NOT NULL,
    key_data     bytea NOT NULL,
    fingerprint  bytea NOT NULL,
    timestamp    bigint NOT NULL,
    seq          bigint NOT NULL DEFAULT nextval('wa_app_sync_keys_seq'),
    PRIMARY KEY (device_id, key_id)
);
CREATE INDEX wa_app_sync_keys_latest_idx ON wa_app_sync_keys (device_id, seq DESC);

CREATE TABLE wa_app_state_versions (
    device_id  uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name       text NOT NULL,
    -- whatsapp-rust's HashState, serialized with serde (JSON).
    state      bytea NOT NULL,
    PRIMARY KEY (device_id, name)
);

CREATE TABLE wa_app_state_mutation_macs (
    device_id  uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name       text NOT NULL,
    index_mac  bytea NOT NULL,
    value_mac  bytea NOT NULL,
    version    bigint NOT NULL,
    PRIMARY KEY (device_id, name, index_mac)
);

CREATE TABLE wa_sender_key_devices (
    device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    group_jid   text NOT NULL,
    device_jid  text NOT NULL,
    has_key     boolean NOT NULL,
    PRIMARY KEY (device_id, group_jid, device_jid)
);
CREATE INDEX wa_sender_key_devices_device_jid_idx ON wa_sender_key_devices (device_id, device_jid);

-- LID <-> phone-number mappings. A LID maps to one phone number; a phone number points at the
-- LID most recently stored for it (wa_pn_lids), as in WhatsApp Web.
CREATE TABLE wa_lid_mappings (
    device_id        uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    lid              text NOT NULL,
    pn               text NOT NULL,
    created_at       bigint NOT NULL,
    updated_at       bigint NOT NULL,
    learning_source  text NOT NULL,
    PRIMARY KEY (device_id, lid)
);
CREATE INDEX wa_lid_mappings_recent_idx ON wa_lid_mappings (device_id, updated_at DESC);

CREATE TABLE wa_pn_lids (
    device_id  uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    pn         text NOT NULL,
    lid        text NOT NULL,
    PRIMARY KEY (device_id, pn)
);

CREATE TABLE wa_base_keys (
    device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    address     text NOT NULL,
    message_id  text NOT NULL,
    base_key    bytea NOT NULL,
    PRIMARY KEY (device_id, address, message_id)
);

CREATE TABLE wa_device_lists (
    device_id  uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    user_id    text NOT NULL,
    -- whatsapp-rust's DeviceListRecord, serialized with serde (JSON).
    record     bytea NOT NULL,
    PRIMARY KEY (device_id, user_id)
);

CREATE TABLE wa_group_metadata (
    device_id  uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    group_jid  text NOT NULL,
    blob       bytea NOT NULL,
    PRIMARY KEY (device_id, group_jid)
);

CREATE TABLE wa_tc_tokens (
    device_id         uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    jid               text NOT NULL,
    token             bytea NOT NULL,
    token_timestamp   bigint NOT NULL,
    sender_timestamp  bigint,
    PRIMARY KEY (device_id, jid)
);

CREATE TABLE wa_sent_messages (
    device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    chat_jid    text NOT NULL,
    message_id  text NOT NULL,
    payload     bytea NOT NULL,
    created_at  bigint NOT NULL,
    PRIMARY KEY (device_id, chat_jid, message_id)
);
CREATE INDEX wa_sent_messages_age_idx ON wa_sent_messages (device_id, created_at);

CREATE TABLE wa_pending_inbound (
    device_id    uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    chat         text NOT NULL,
    sender       text NOT NULL,
    id           text NOT NULL,
    message      bytea NOT NULL,
    inserted_at  bigint NOT NULL,
    PRIMARY KEY (device_id, chat, sender, id)
);

CREATE TABLE wa_msg_secrets (
    device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    chat        text NOT NULL,
    sender      text NOT NULL,
    msg_id      text NOT NULL,
    secret      bytea NOT NULL,
    expires_at  bigint NOT NULL,
    message_ts  bigint NOT NULL,
    PRIMARY KEY (device_id, chat, sender, msg_id)
);
