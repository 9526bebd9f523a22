-- One row per watched mailbox (keyed by its configured name), written by the
-- watcher on every state change: what `dispute-desk status` prints.
-- state: connecting | syncing | idle | polling | reconnecting | stopped.
-- attempt: consecutive failed connections (0 once a sync succeeded).
CREATE TABLE mailbox_health (
    mailbox TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    last_sync_at BIGINT,
    last_error TEXT,
    last_error_at BIGINT,
    attempt BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
