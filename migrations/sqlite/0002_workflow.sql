-- Workflow, reminders and payments (issue: case workflow, routing,
-- reminders and French late-payment law). Portable SQL shared with
-- migrations/postgres/0002_workflow.sql except id columns.

-- What the client has paid so far (payments import).
ALTER TABLE invoices ADD COLUMN paid_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN paid_date TEXT;

-- Service level of the current status: the deadline (ISO date) and when an
-- escalation task was made for it; an adjustment's agreed amount.
ALTER TABLE cases ADD COLUMN deadline TEXT;
ALTER TABLE cases ADD COLUMN escalated_at BIGINT;
ALTER TABLE cases ADD COLUMN adjusted_cents BIGINT;
ALTER TABLE cases ADD COLUMN reason TEXT;

-- A dated block on reminders for one invoice: an open dispute (until its case
-- is resolved), a promise (until the promised date + grace), a payment notice
-- (until confirmed or the grace ends). Lifted, never deleted.
CREATE TABLE reminder_blocks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_number TEXT NOT NULL REFERENCES invoices(number),
    reason TEXT NOT NULL,
    case_id BIGINT REFERENCES cases(id),
    message_id BIGINT REFERENCES messages(id),
    from_date TEXT NOT NULL,
    until_date TEXT,
    created_at BIGINT NOT NULL,
    lifted_at BIGINT,
    lift_reason TEXT
);
CREATE INDEX reminder_blocks_invoice ON reminder_blocks(invoice_number, lifted_at);

-- Each reminder level of each invoice happens at most once: drafted, made a
-- task, or skipped (after downtime, or by a client's override).
CREATE TABLE invoice_reminders (
    invoice_number TEXT NOT NULL REFERENCES invoices(number),
    level TEXT NOT NULL,
    run_date TEXT NOT NULL,
    outcome TEXT NOT NULL,
    draft_id BIGINT REFERENCES drafts(id),
    task_id BIGINT REFERENCES tasks(id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (invoice_number, level)
);
CREATE INDEX invoice_reminders_draft ON invoice_reminders(draft_id);

-- Payments imported from the bank or the accounting package.
CREATE TABLE payments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_number TEXT NOT NULL REFERENCES invoices(number),
    paid_on TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    source TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    UNIQUE (invoice_number, paid_on, amount_cents)
);
