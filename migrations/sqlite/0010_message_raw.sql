-- The raw bytes of each message in a table of their own (issue 7).
-- In `messages` the raw blob sat before every column the flow reads and
-- writes (state, client, case, subject...): each read of those walked the
-- blob's overflow pages, and each UPDATE of a message (processed, then its
-- case) wrote the blob again. The bytes are written once, at ingest.
CREATE TABLE message_raw (
    message_id INTEGER PRIMARY KEY REFERENCES messages(id),
    raw BLOB NOT NULL
);
INSERT INTO message_raw (message_id, raw) SELECT id, raw FROM messages;
ALTER TABLE messages DROP COLUMN raw;
