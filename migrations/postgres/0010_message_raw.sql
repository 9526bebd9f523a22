-- The raw bytes of each message in a table of their own (issue 7): see the
-- SQLite migration of the same name. Same schema, BYTEA for BLOB.
CREATE TABLE message_raw (
    message_id BIGINT PRIMARY KEY REFERENCES messages(id),
    raw BYTEA NOT NULL
);
INSERT INTO message_raw (message_id, raw) SELECT id, raw FROM messages;
ALTER TABLE messages DROP COLUMN raw;
