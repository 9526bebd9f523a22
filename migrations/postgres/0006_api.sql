-- Issue 8: the company's systems. Same text as migrations/sqlite/0006_api.sql
-- except id columns.

-- Identifiers of a client as e-invoices carry them (scheme: siret | siren |
-- vat), to match the buyer of an imported e-invoice to a client.
CREATE TABLE client_identifiers (
    scheme TEXT NOT NULL,
    value TEXT NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients(id),
    PRIMARY KEY (scheme, value)
);
CREATE INDEX client_identifiers_client ON client_identifiers(client_id);

-- What an e-invoice adds to a ledger row. doc_type: invoice | credit_note;
-- source: csv | api | einvoice.
ALTER TABLE invoices ADD COLUMN doc_type TEXT NOT NULL DEFAULT 'invoice';
ALTER TABLE invoices ADD COLUMN buyer_reference TEXT;
ALTER TABLE invoices ADD COLUMN tax_exclusive_cents BIGINT;
ALTER TABLE invoices ADD COLUMN tax_cents BIGINT;
ALTER TABLE invoices ADD COLUMN grand_total_cents BIGINT;
ALTER TABLE invoices ADD COLUMN source TEXT NOT NULL DEFAULT 'csv';

-- API keys: the secret is shown once; only sha256(salt || secret) is kept.
-- prefix is the public part of the key (`ddk_<prefix>_<secret>`) used to find
-- the row. scope: read | write. A revoked key is kept for the audit trail.
CREATE TABLE api_keys (
    id BIGSERIAL PRIMARY KEY,
    prefix TEXT NOT NULL UNIQUE,
    salt TEXT NOT NULL,
    hash TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    scope TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

-- Webhooks are derived from the append-only audit trail: per endpoint, the
-- last audit event turned into deliveries (written in the same transaction
-- as the deliveries, so a crash neither loses nor doubles an event).
CREATE TABLE webhook_cursors (
    endpoint TEXT PRIMARY KEY,
    last_audit_id BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One row per (endpoint, event): the durable queue. status: pending |
-- delivered | failed (gave up after max attempts; `webhooks retry` requeues).
CREATE TABLE webhook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    endpoint TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    audit_id BIGINT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT,
    UNIQUE (endpoint, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);

-- The delivery log: every attempt with its HTTP status or error.
CREATE TABLE webhook_attempts (
    id BIGSERIAL PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries(id),
    at BIGINT NOT NULL,
    http_status BIGINT,
    error TEXT,
    millis BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id);
