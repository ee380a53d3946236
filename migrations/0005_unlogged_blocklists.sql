-- The block-list snapshot is a cache of WhatsApp's list, read again from WhatsApp every time a
-- session connects (and on demand with ?refresh=true). It needs no crash durability, so it
-- skips the write-ahead log: a block or unblock then costs no WAL flush. After a crash the table
-- is empty until each device reconnects, and a read meanwhile goes to WhatsApp.
ALTER TABLE blocklists SET UNLOGGED;
