-- Contacts: each device's snapshot of its WhatsApp block list, kept current by block and
-- unblock answers and by WhatsApp's block-list notifications.
CREATE TABLE blocklists (
    device_id   uuid PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    -- WhatsApp's hash of the list, as last seen.
    dhash       text NOT NULL,
    -- Blocked users' JIDs, as WhatsApp lists them (LID JIDs).
    items       text[] NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
