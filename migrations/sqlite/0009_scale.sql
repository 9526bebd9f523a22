-- Several serve instances on one database (issue 7). Times in this file are
-- epoch MILLISECONDS read from the database's own clock, so that instances on
-- hosts whose clocks differ still agree on who holds what.

-- One row per serve process: a random id per start, a heartbeat renewed every
-- quarter of the takeover time, stopped_at on a graceful stop. An instance
-- whose heartbeat is older than the lease time is dead: work it claimed
-- (outbox rows in `sending`, a daily run) may be recovered by another.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    stopped_at BIGINT
);

-- Work that exactly one instance at a time does, by name (`mailbox:NAME`).
-- The holder renews expires_at; a lease whose expires_at has passed may be
-- taken by another instance (takeovers counts how often that happened). A
-- graceful stop releases it by setting expires_at to 0.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    acquired_at BIGINT NOT NULL,
    renewed_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    takeovers BIGINT NOT NULL DEFAULT 0
);

-- A scheduled job's run for one day (`remind`, 2026-12-01), claimed once by
-- the instance that inserts the row; finished_at once it is done. A run whose
-- instance died before finishing is claimed again (the reminder pass is
-- idempotent for a day).
CREATE TABLE job_runs (
    job TEXT NOT NULL,
    day TEXT NOT NULL,
    instance TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    attempts BIGINT NOT NULL DEFAULT 1,
    result TEXT,
    PRIMARY KEY (job, day)
);

-- Which instance claimed an outbox row it is sending (NULL: the one-shot
-- `send` command or a row claimed before this migration).
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;

