-- Core schema of dispute-desk (PostgreSQL dialect). Portable SQL shared with migrations/postgres:
-- only id columns (INTEGER PRIMARY KEY vs BIGSERIAL) and blobs (BLOB vs BYTEA)
-- differ. Times are UTC epoch seconds (BIGINT); calendar dates are ISO text
-- 'YYYY-MM-DD' (sortable); money is integer cents.

-- The company's people. `role` is accountant | sales | technical | manager.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT,
    created_at BIGINT NOT NULL
);

-- Clients. email_domains is the ';'-separated list of FORMAT.md.
CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email_domains TEXT NOT NULL DEFAULT '',
    account_owner TEXT REFERENCES users(id),
    strategic BIGINT NOT NULL DEFAULT 0,
    language TEXT NOT NULL DEFAULT 'fr',
    created_at BIGINT NOT NULL
);

-- Known contacts: addresses that identify a client (learned from the mail we
-- sent to them and from messages linked by invoice number).
CREATE TABLE contacts (
    email TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES clients(id),
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The ledger. promised_date is the latest payment promise; payment_noticed_at
-- when the client said it paid (checked by an accountant).
CREATE TABLE invoices (
    number TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES clients(id),
    issue_date TEXT NOT NULL,
    due_date TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    po_number TEXT,
    project TEXT,
    promised_date TEXT,
    payment_noticed_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX invoices_client ON invoices(client_id);

-- Every message, in and out, stored once: by Message-ID when it has one, by
-- content hash always, and by mailbox+uidvalidity+uid when it came from IMAP.
-- state: accepted (stored, not yet processed) -> processed | failed.
-- disposition: case | task | note | unlinked | ignored | sent.
CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    direction TEXT NOT NULL,
    message_id TEXT UNIQUE,
    content_hash TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    mailbox TEXT,
    uidvalidity BIGINT,
    uid BIGINT,
    raw BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    subject TEXT,
    from_addr TEXT,
    date_at BIGINT,
    client_id TEXT REFERENCES clients(id),
    link_method TEXT,
    link_confidence DOUBLE PRECISION,
    link_notes TEXT,
    category TEXT,
    classification TEXT,
    case_id BIGINT,
    disposition TEXT,
    owner_id TEXT,
    parsed TEXT,
    processed_at BIGINT,
    UNIQUE (mailbox, uidvalidity, uid)
);
CREATE INDEX messages_state ON messages(state, id);
CREATE INDEX messages_case ON messages(case_id);

CREATE TABLE message_invoices (
    message_id BIGINT NOT NULL REFERENCES messages(id),
    invoice_number TEXT NOT NULL REFERENCES invoices(number),
    PRIMARY KEY (message_id, invoice_number)
);

-- Per mailbox: the last UID fully ingested, written in the same transaction
-- as the message.
CREATE TABLE mailbox_checkpoints (
    mailbox TEXT PRIMARY KEY,
    uidvalidity BIGINT NOT NULL,
    last_uid BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A case: a dispute (kind 'dispute') or a request needing follow-up
-- (kind 'request'). status per DESIGN.md; priority with its reason.
CREATE TABLE cases (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients(id),
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    owner_id TEXT REFERENCES users(id),
    priority BIGINT NOT NULL DEFAULT 0,
    priority_reason TEXT NOT NULL DEFAULT '',
    amount_cents BIGINT NOT NULL DEFAULT 0,
    disputed_cents BIGINT,
    language TEXT NOT NULL DEFAULT 'fr',
    opened_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    closed_at BIGINT
);
CREATE INDEX cases_status ON cases(status, priority);
CREATE INDEX cases_client ON cases(client_id, status);

CREATE TABLE case_invoices (
    case_id BIGINT NOT NULL REFERENCES cases(id),
    invoice_number TEXT NOT NULL REFERENCES invoices(number),
    PRIMARY KEY (case_id, invoice_number)
);

-- Status history, one row per move (the audit log holds the same with a hash).
CREATE TABLE case_status_history (
    id BIGSERIAL PRIMARY KEY,
    case_id BIGINT NOT NULL REFERENCES cases(id),
    from_status TEXT,
    to_status TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT,
    at BIGINT NOT NULL
);

-- Work for a person: check a payment, read a note, call the client...
CREATE TABLE tasks (
    id BIGSERIAL PRIMARY KEY,
    case_id BIGINT REFERENCES cases(id),
    invoice_number TEXT REFERENCES invoices(number),
    message_id BIGINT REFERENCES messages(id),
    kind TEXT NOT NULL,
    owner_id TEXT REFERENCES users(id),
    status TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    due_date TEXT,
    created_at BIGINT NOT NULL,
    done_at BIGINT
);
CREATE INDEX tasks_owner ON tasks(owner_id, status);

-- Drafts: replies and reminders to clients (need an approval to leave), and
-- internal call briefs. status: pending | approved | rejected.
CREATE TABLE drafts (
    id BIGSERIAL PRIMARY KEY,
    case_id BIGINT REFERENCES cases(id),
    message_id BIGINT REFERENCES messages(id),
    kind TEXT NOT NULL,
    language TEXT NOT NULL,
    to_addr TEXT,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    template TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    decided_by TEXT REFERENCES users(id),
    decided_at BIGINT,
    reason TEXT
);
CREATE INDEX drafts_status ON drafts(status, id);

-- Every edit of a draft: who, when, before and after.
CREATE TABLE draft_edits (
    id BIGSERIAL PRIMARY KEY,
    draft_id BIGINT NOT NULL REFERENCES drafts(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    at BIGINT NOT NULL,
    before_body TEXT NOT NULL,
    after_body TEXT NOT NULL
);

-- The outbox: one row per approved draft (draft_id UNIQUE), written in the
-- approval's transaction. raw holds the exact bytes to send, Message-ID fixed
-- before the first attempt. status: queued | sending | sent | failed | uncertain.
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    draft_id BIGINT NOT NULL UNIQUE REFERENCES drafts(id),
    message_id TEXT NOT NULL UNIQUE,
    from_addr TEXT NOT NULL,
    to_addrs TEXT NOT NULL,
    raw BYTEA NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX outbox_status ON outbox(status, next_attempt_at);

-- Append-only audit trail; each row carries the hash of the previous one.
CREATE TABLE audit_events (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    case_id BIGINT,
    entity TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_case ON audit_events(case_id);
