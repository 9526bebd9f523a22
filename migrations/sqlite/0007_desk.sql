-- Issue 6: the web desk at scale (100,000 cases, 1,000,000 invoices). Same
-- text as migrations/postgres/0007_desk.sql.

-- When the client first wrote about the case (the earliest message date),
-- else when it opened: the dashboard's "motives over time" counts by it
-- without a subquery per case. Set when a message is attached to a case.
ALTER TABLE cases ADD COLUMN first_at BIGINT;
UPDATE cases SET first_at = COALESCE((SELECT MIN(m.date_at) FROM messages m WHERE m.case_id = cases.id), opened_at);

-- The open-case list: one partial index per sort order, so a page is an
-- index walk (the WHERE term must be written exactly so in the queries).
CREATE INDEX cases_open_priority ON cases(priority DESC, id) WHERE status <> 'resolved';
CREATE INDEX cases_open_amount ON cases(amount_cents DESC, id) WHERE status <> 'resolved';
CREATE INDEX cases_open_age ON cases(opened_at, id) WHERE status <> 'resolved';
CREATE INDEX cases_open_updated ON cases(updated_at DESC, id) WHERE status <> 'resolved';
CREATE INDEX cases_owner ON cases(owner_id, status);
CREATE INDEX case_invoices_invoice ON case_invoices(invoice_number);

-- The dashboard: open disputes by category and owner (covering), time to
-- resolve (median by an index walk), motives by month.
CREATE INDEX cases_open_disputes ON cases(category, owner_id, disputed_cents, amount_cents) WHERE kind = 'dispute' AND status <> 'resolved';
CREATE INDEX cases_resolve_span ON cases((closed_at - opened_at)) WHERE closed_at IS NOT NULL;
CREATE INDEX cases_motives ON cases(kind, first_at, category);

-- Overdue buckets and receivables read only unpaid invoices; DSO's sales
-- read the last 90 days of issues.
CREATE INDEX invoices_unpaid ON invoices(due_date, amount_cents, paid_cents) WHERE status <> 'paid' AND amount_cents > paid_cents;
CREATE INDEX invoices_issued ON invoices(issue_date, amount_cents);

-- A case's thread in date order.
CREATE INDEX messages_case_date ON messages(case_id, date_at);

-- A case page's drafts and tasks; the unlinked-message queue.
CREATE INDEX drafts_case ON drafts(case_id);
CREATE INDEX tasks_case ON tasks(case_id, status);
CREATE INDEX messages_disposition ON messages(disposition, id);
