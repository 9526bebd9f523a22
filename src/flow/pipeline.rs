//! pipeline: drives each accepted message through parse → link → classify →
//! decide → draft and writes the whole result in one transaction, which also
//! marks the message processed: a message is processed exactly once, and a
//! failure leaves it accepted for a retry (then `failed`, kept and visible).

use crate::domain::{EmailAddress, InvoiceNumber, Language};
use crate::flow::ahead::{self, Ahead, Early, Guess};
use crate::flow::classify::{Classification, Classifier, ClassifyInput};
use crate::flow::decide::{self, CaseAction, ClientFacts, DecideInput, Decision, DraftKind, InvoiceFacts};
use crate::flow::draft::{DraftFacts, DraftText, Drafter, HistoryLine};
use crate::flow::link::{self, Directory, Link, LinkMethod};
use crate::flow::parse::{self, Message};
use crate::llm::draft::{Kind, LlmDrafter};
use crate::policy::Policy;
use crate::store::audit::{self, Actor, Chain, Event};
use crate::store::cases::{NewCase, NewDraft, NewTask};
use crate::store::ledger::Client;
use crate::store::messages::Accepted;
use crate::store::{Result, Store, StoreError, Tx};
use chrono::NaiveDate;
use serde_json::json;
use std::collections::HashMap;
use tracing::Instrument;

/// The company's identity on drafts and outgoing mail.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Company {
    pub name: String,
    /// The address replies are sent from.
    pub from_address: String,
    /// The sign-off under replies.
    pub signer: String,
}

impl Default for Company {
    fn default() -> Self {
        Company { name: "Votre société".into(), from_address: "comptabilite@example.invalid".into(), signer: "Service comptabilité".into() }
    }
}

/// What processing a message led to (for logs, `ingest` output and eval).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub message: i64,
    pub direction: String,
    pub category: Option<String>,
    pub disposition: String,
    pub case_id: Option<i64>,
    pub owner_id: Option<String>,
    pub invoices: Vec<String>,
    pub drafts: Vec<i64>,
}

/// Of the classifications made ahead (`ahead`): kept, or made again because
/// the link in order found other facts.
#[derive(Debug, Default)]
pub struct GuessCounts {
    pub kept: std::sync::atomic::AtomicU64,
    pub again: std::sync::atomic::AtomicU64,
}

/// The flow for one database, with its policies, classifier and templates.
pub struct Pipeline {
    pub store: Store,
    pub policy: Policy,
    pub classifier: std::sync::Arc<dyn Classifier>,
    pub drafter: Drafter,
    /// When set, the model rewrites each template draft from the same facts
    /// (after the message's transaction; the template draft stays if the
    /// model's text is refused).
    pub llm_drafter: Option<LlmDrafter>,
    pub company: Company,
    /// Shared with `ahead`'s thread while a run lasts (copied on write).
    dir: std::sync::Arc<Directory>,
    clients: std::sync::Arc<HashMap<String, Client>>,
    /// Users with their load (open cases + open tasks), read at most every
    /// [`STAFF_TTL`] and kept up to date with what this pipeline assigns, so
    /// that a message does not count every open case and task again.
    staff: Vec<crate::flow::decide::Staff>,
    /// Users' names by id (the owner's name on a call brief), read with the staff.
    names: HashMap<String, String>,
    staff_read: std::time::Instant,
    /// Processing attempts before a message is set aside as failed.
    pub max_attempts: i64,
    /// How the classifications `ahead` made were used (for `bench ingest`).
    pub guesses: GuessCounts,
}

/// How long the staff loads are trusted before they are read again (to see
/// what people, the reminder pass and other instances changed meanwhile).
const STAFF_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Messages of a case shown in a call brief: the most recent ones.
const HISTORY_LINES: i64 = 30;

const FREE_MAIL: &[&str] = &["gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "hotmail.fr", "live.com", "live.fr", "yahoo.com", "yahoo.fr", "orange.fr", "wanadoo.fr", "free.fr", "sfr.fr", "laposte.net", "icloud.com", "me.com", "gmx.fr", "gmx.com", "aol.com", "protonmail.com", "proton.me"];

impl Pipeline {
    pub async fn new(store: Store, policy: Policy, classifier: Box<dyn Classifier>, drafter: Drafter, company: Company) -> Result<Pipeline> {
        let dir = store.directory().await?;
        let clients: HashMap<String, Client> = store.clients().await?.into_iter().map(|c| (c.id.clone(), c)).collect();
        let (staff, names) = (store.staff().await?, user_names(&store).await?);
        Ok(Pipeline { store, policy, classifier: classifier.into(), drafter, llm_drafter: None, company, dir: dir.into(), clients: clients.into(), staff, names, staff_read: std::time::Instant::now(), max_attempts: 3, guesses: GuessCounts::default() })
    }

    /// Reloads the ledger snapshot (after an import).
    pub async fn refresh(&mut self) -> Result<()> {
        self.dir = self.store.directory().await?.into();
        self.clients = std::sync::Arc::new(self.store.clients().await?.into_iter().map(|c| (c.id.clone(), c)).collect());
        self.staff = self.store.staff().await?;
        self.names = user_names(&self.store).await?;
        self.staff_read = std::time::Instant::now();
        Ok(())
    }

    /// The staff loads, read again when older than [`STAFF_TTL`].
    async fn staff(&mut self) -> Result<Vec<crate::flow::decide::Staff>> {
        if self.staff_read.elapsed() > STAFF_TTL {
            self.staff = self.store.staff().await?;
            self.names = user_names(&self.store).await?;
            self.staff_read = std::time::Instant::now();
        }
        Ok(self.staff.clone())
    }

    /// Processes every accepted message, oldest first. Returns the outcomes.
    ///
    /// With a local classifier (the rules) up to [`BATCH`] messages share one
    /// transaction, and every read of the flow goes through it, so a message
    /// sees the cases the earlier messages of its batch opened; the audit
    /// events of the batch are written together before the commit. One
    /// commit per batch instead of one per message, and fewer statements, is
    /// most of the speed of `bench ingest`. When the batch fails (its commit,
    /// or any of its messages), nothing of it is stored and its messages are
    /// processed again one at a time, one transaction each, so that a bad
    /// message is recorded as failed on its own and the others go through.
    /// With a remote model the batch is one message: its call must not hold
    /// the database's write lock.
    pub async fn run_pending(&mut self) -> Result<Vec<Outcome>> {
        let mut out = Vec::new();
        self.run_pending_each(|o| out.push(o)).await?;
        Ok(out)
    }

    /// [`Pipeline::run_pending`], handing each outcome to `each` as its
    /// batch commits instead of keeping them all: memory does not grow with
    /// the number of messages. Returns how many were processed.
    pub async fn run_pending_each(&mut self, mut each: impl FnMut(Outcome) + Send) -> Result<usize> {
        let mut done = 0usize;
        let mut out = |o: Outcome| {
            done += 1;
            each(o)
        };
        // With the rules, the next batch is parsed and classified ahead on
        // another thread while this one is written (see `ahead`); started
        // with the first batch worth it, ended when this run returns.
        let mut look: Option<Ahead> = None;
        let mut next: Option<(Vec<Accepted>, ahead::Pending)> = None;
        loop {
            let (batch, pending) = match next.take() {
                Some((b, p)) => (b, Some(p)),
                None => (self.store.accepted(BATCH).await?, None),
            };
            if batch.is_empty() {
                break;
            }
            if self.classifier.is_local() && batch.len() > 1 {
                let (first, count) = (batch[0].id, batch.len());
                if look.is_none() {
                    match Ahead::start(self.classifier.clone(), ahead::Snapshot { dir: self.dir.clone(), clients: self.clients.clone() }) {
                        Ok(a) => look = Some(a),
                        Err(e) => tracing::warn!(error = %e, "preparing every batch on the flow's thread"),
                    }
                }
                let pending = match (pending, &look) {
                    (Some(p), _) => Some(p),
                    (None, Some(a)) => Some(a.submit(&batch)),
                    (None, None) => None,
                };
                let early = match pending {
                    Some(p) => p.await.ok(),
                    None => None,
                };
                // The next batch, prepared while this one is written.
                if let Some(a) = &look {
                    let last = batch[count - 1].id;
                    let after = self.store.accepted_after(last, BATCH).await?;
                    if !after.is_empty() {
                        let p = a.submit(&after);
                        next = Some((after, p));
                    }
                }
                match self.process_batch(&batch, early).await {
                    Ok(o) => {
                        o.into_iter().for_each(&mut out);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(first, count, error = %e, "batch transaction failed; processing its messages one at a time");
                        // What the batch added in memory (contacts, loads) was rolled back.
                        self.refresh().await?;
                        // Start again from the oldest waiting message, as before the look-ahead.
                        next = None;
                    }
                }
            }
            let mut progressed = false;
            for acc in batch {
                let id = acc.id;
                match self.process(acc).await {
                    Ok(Some(o)) => {
                        progressed = true;
                        out(o)
                    }
                    Ok(None) => progressed = true,
                    Err(e) => {
                        tracing::warn!(msg = id, error = %e, "processing failed; will retry");
                        self.store.processing_failed(id, &e.to_string(), self.max_attempts).await?;
                    }
                }
            }
            if !progressed {
                // Everything in the batch failed this round; the failures are
                // recorded (and set aside after max_attempts). Stop here
                // rather than spin.
                let left = self.store.accepted(BATCH).await?;
                if left.iter().all(|a| a.attempts >= self.max_attempts) || left.is_empty() {
                    break;
                }
            }
        }
        Ok(done)
    }

    /// Several messages in one transaction (see [`Pipeline::run_pending`]).
    /// Err: the transaction failed, or one of its messages did, and nothing
    /// of the batch is stored; the caller then processes the batch one
    /// message at a time, which records each failure on its own. (A
    /// savepoint per message would spare that but costs two statements a
    /// message on the path every message takes; a failure is rare.)
    /// `early`: the batch as `ahead` prepared it (None: prepared here).
    async fn process_batch(&mut self, batch: &[Accepted], early: Option<Vec<Early>>) -> Result<Vec<Outcome>> {
        let mut tx = self.store.begin().await?;
        self.store.lock_case_writes(&mut tx).await?;
        let mut chain = Chain::buffered(self.store.backend);
        let mut out = Vec::with_capacity(batch.len());
        let mut rewrites = Vec::new();
        let mut early = early.filter(|e| e.len() == batch.len() && e.iter().zip(batch).all(|(e, a)| e.id == a.id)).map(|e| e.into_iter());
        // Which of them still wait, read once under the lock the batch now
        // holds (SQLite's write lock, PostgreSQL's case-writes lock): no
        // other instance can process one of them until this commit, so the
        // answer holds for the whole batch.
        let ids: Vec<i64> = batch.iter().map(|a| a.id).collect();
        let waiting = Store::waiting_among(&mut tx, &ids).await?;
        for acc in batch {
            let span = tracing::info_span!("message", msg = acc.id, direction = %acc.direction);
            let pre = early.as_mut().and_then(|e| e.next());
            if !waiting.contains(&acc.id) {
                span.in_scope(|| tracing::debug!("already processed elsewhere"));
                continue;
            }
            let done = self.process_in(&mut tx, &mut chain, acc, pre).instrument(span.clone()).await.inspect_err(|e| span.in_scope(|| tracing::warn!(error = %e, "processing failed")))?;
            if let Some((o, written, effects)) = done {
                self.remember(effects);
                if let Some(w) = written {
                    rewrites.push(w);
                }
                out.push(o);
            }
        }
        chain.flush(&mut tx).await?;
        tx.commit().await?;
        for w in rewrites {
            self.rewrite_drafts(w).await;
        }
        Ok(out)
    }

    /// Processes one message in its own transaction. Ok(None): someone else
    /// processed it first.
    pub async fn process(&mut self, acc: Accepted) -> Result<Option<Outcome>> {
        let span = tracing::info_span!("message", msg = acc.id, direction = %acc.direction);
        async move {
            let msg = parse::parse(&acc.raw);
            let prepared = if acc.direction == "out" {
                None
            } else {
                // Linking and classifying before the transaction: a model's
                // call must not hold the write lock.
                let mut conn = self.store.pool.acquire().await?;
                Some(self.prepare_inbound(&mut conn, acc.id, &msg, acc.hand_linked_client.as_deref(), None).await?)
            };
            let mut tx = self.store.begin().await?;
            let mut chain = Chain::buffered(self.store.backend);
            let done = match prepared {
                None => self.process_outbound(&mut tx, acc.id, &msg).await?.map(|(o, e)| (o, None, e)),
                Some(p) => {
                    self.store.lock_case_writes(&mut tx).await?;
                    self.commit_inbound(&mut tx, &mut chain, acc.id, &msg, p, false).await?
                }
            };
            let Some((outcome, written, effects)) = done else {
                return Ok(None);
            };
            chain.flush(&mut tx).await?;
            tx.commit().await?;
            self.remember(effects);
            if let Some(w) = written {
                self.rewrite_drafts(w).await;
            }
            Ok(Some(outcome))
        }
        .instrument(span)
        .await
    }

    /// Adds to `acc` the time the flow's own pure stages take on `raw`
    /// (parse, link without thread history, classify), outside any
    /// transaction: `bench ingest` sets them beside the whole flow, and what
    /// remains of it is deciding, drafting and the database.
    pub async fn time_stages(&self, raw: &[u8], acc: &mut StageSeconds) {
        let t = std::time::Instant::now();
        let msg = parse::parse(raw);
        acc.parse += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let l = link::link(&msg, &self.dir, &[]);
        acc.link += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        std::hint::black_box(self.classify_linked(&msg, &l).await);
        acc.classify += t.elapsed().as_secs_f64();
    }

    /// One message inside the caller's (batch) transaction.
    /// `early`: the message as `ahead` parsed (and guessed) it.
    async fn process_in(&mut self, tx: &mut Tx, chain: &mut Chain, acc: &Accepted, early: Option<Early>) -> Result<Option<(Outcome, Option<Written>, Effects)>> {
        let (msg, guess) = match early {
            Some(e) => (e.message, e.guess),
            None => (parse::parse(&acc.raw), None),
        };
        if acc.direction == "out" {
            return Ok(self.process_outbound(tx, acc.id, &msg).await?.map(|(o, e)| (o, None, e)));
        }
        let p = self.prepare_inbound(tx, acc.id, &msg, acc.hand_linked_client.as_deref(), guess).await?;
        self.commit_inbound(tx, chain, acc.id, &msg, p, true).await
    }

    /// What a committed message adds to the pipeline's memory: people's
    /// loads and the contacts that link later mail.
    fn remember(&mut self, e: Effects) {
        for owner in &e.owners {
            if let Some(s) = self.staff.iter_mut().find(|s| &s.id == owner) {
                s.load += 1;
            }
        }
        for (addr, client) in e.contacts {
            if !self.dir.contacts.contains_key(&addr) {
                std::sync::Arc::make_mut(&mut self.dir).contacts.insert(addr, client);
            }
        }
    }

    /// The model's rewrite of the template drafts a message left (after its commit).
    async fn rewrite_drafts(&self, (facts, drafts): Written) {
        if let Some(ld) = &self.llm_drafter {
            for (did, kind, text) in drafts {
                if let Err(e) = self.llm_rewrite(ld, did, kind, &facts, &text).await {
                    tracing::warn!(draft = did, error = %e, "cannot store the model's draft; the template draft stays");
                }
            }
        }
    }

    fn thread_ids(msg: &Message) -> Vec<String> {
        let mut ids: Vec<String> = msg.references.clone();
        for i in &msg.in_reply_to {
            if !ids.contains(i) {
                ids.push(i.clone());
            }
        }
        ids
    }

    async fn process_outbound(&mut self, tx: &mut Tx, id: i64, msg: &Message) -> Result<Option<(Outcome, Effects)>> {
        // Our own mail: link it as if the first recipient had written it, so
        // that client replies can thread to it; remember its recipients.
        let mut as_client = msg.clone();
        as_client.from = msg.to.first().cloned();
        let hits: Vec<_> = Store::thread_hits(tx, &Self::thread_ids(msg)).await?.into_iter().map(|h| h.0).collect();
        let l = link::link_ours(&as_client, &self.dir, &hits);
        let done = sqlx::query(
            "UPDATE messages SET state = 'processed', subject = $2, from_addr = $3, date_at = $4, client_id = $5, link_method = $6, \
             link_confidence = $7, disposition = 'sent', processed_at = $8 WHERE id = $1 AND state = 'accepted'",
        )
        .bind(id)
        .bind(&msg.subject)
        .bind(msg.from.as_ref().map(|f| f.to_string()))
        .bind(msg.date.map(|d| d.timestamp()))
        .bind(l.client_id.clone())
        .bind(l.method.as_str())
        .bind(l.confidence as f64)
        .bind(crate::store::now())
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        self.store.link_message_invoices(tx, id, &l.invoices).await?;
        let mut effects = Effects::default();
        if let Some(c) = &l.client_id {
            for to in msg.to.iter().chain(msg.cc.iter()) {
                if !FREE_MAIL.contains(&to.domain()) && !self.dir.contacts.contains_key(to) && !effects.contacts.iter().any(|(a, _)| a == to) {
                    self.store.add_contact(tx, to, c, "outbound").await?;
                }
                effects.contacts.push((to.clone(), c.clone()));
            }
        }
        Ok(Some((Outcome { message: id, direction: "out".into(), category: None, disposition: "sent".into(), case_id: None, owner_id: None, invoices: l.invoices.iter().map(|i| i.to_string()).collect(), drafts: vec![] }, effects)))
    }

    /// Link and classify an inbound message (reads on `conn`: the pool, or
    /// the batch's transaction). `guess`: the classification `ahead` made,
    /// kept when this link gives it the same facts.
    async fn prepare_inbound(&self, conn: &mut sqlx::AnyConnection, id: i64, msg: &Message, hand_linked: Option<&str>, guess: Option<Guess>) -> Result<Prepared> {
        let hits = Store::thread_hits(conn, &Self::thread_ids(msg)).await?;
        let thread: Vec<_> = hits.iter().map(|h| h.0.clone()).collect();
        let l = match hand_linked {
            // A person's link replaces the automatic one.
            Some(client) => Link {
                client_id: Some(client.to_string()),
                invoices: Store::hand_linked_invoices(conn, id, client).await?.iter().filter_map(|n| InvoiceNumber::parse(n).ok()).collect(),
                method: LinkMethod::Manual,
                confidence: 1.0,
                notes: vec!["linked by hand".into()],
            },
            None => link::link(msg, &self.dir, &thread),
        };
        let (client, today) = self.client_and_day(msg, &l);
        let had_guess = guess.is_some();
        let kept = guess.and_then(|g| g.holds(!l.invoices.is_empty(), client.is_some(), today));
        let cls = match kept {
            Some(c) => {
                self.guesses.kept.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                c
            }
            None => {
                if had_guess {
                    self.guesses.again.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                self.classify_as(msg, &l, client.is_some(), today).await
            }
        };
        Ok(Prepared { hits, link: l, client, cls, today })
    }

    /// Classifies a linked message, as of its date: with its client (when
    /// the link found a known one) and the day it was written.
    async fn classify_linked(&self, msg: &Message, l: &Link) -> (Option<Client>, Classification, NaiveDate) {
        let (client, today) = self.client_and_day(msg, l);
        let cls = self.classify_as(msg, l, client.is_some(), today).await;
        (client, cls, today)
    }

    /// The linked message's known client, and the day it is classified as of.
    fn client_and_day(&self, msg: &Message, l: &Link) -> (Option<Client>, NaiveDate) {
        (l.client_id.as_ref().and_then(|c| self.clients.get(c)).cloned(), ahead::day_of(msg))
    }

    async fn classify_as(&self, msg: &Message, l: &Link, known_client: bool, today: NaiveDate) -> Classification {
        self.classifier.classify(ClassifyInput { message: msg, reference_date: today, has_invoice: !l.invoices.is_empty(), known_client }).await
    }

    /// Decide and write an inbound message inside `tx`, whose caller holds
    /// the case-writes lock (`Store::lock_case_writes`, once per transaction):
    /// no other instance changes cases until it commits, so the open cases
    /// read below are the ones this message continues.
    /// `checked`: the caller read, under that lock, that the message still waits.
    async fn commit_inbound(&mut self, tx: &mut Tx, chain: &mut Chain, id: i64, msg: &Message, p: Prepared, checked: bool) -> Result<Option<(Outcome, Option<Written>, Effects)>> {
        let Prepared { hits, link: l, client, cls, today } = p;
        let invoices = Store::invoices_by_number_in(tx, &l.invoices).await?;
        let open_cases = match &client {
            Some(c) => Store::open_cases_of(tx, &c.id).await?,
            None => vec![],
        };
        let staff = self.staff().await?;
        let client_facts = client.as_ref().map(|c| ClientFacts { id: c.id.clone(), account_owner: c.account_owner.clone(), strategic: c.strategic });
        let invoice_facts: Vec<InvoiceFacts> = invoices
            .iter()
            .filter_map(|i| Some(InvoiceFacts { number: i.number.clone(), amount: i.amount, due_date: NaiveDate::parse_from_str(&i.due_date, "%Y-%m-%d").ok()? }))
            .collect();
        let decision = decide::decide(
            &self.policy,
            &DecideInput {
                link: &l,
                classification: &cls,
                client: client_facts.as_ref(),
                invoices: &invoice_facts,
                open_cases: &open_cases,
                thread_case: hits.iter().find_map(|h| h.1),
                staff: &staff,
                bulk: msg.auto.mailing_list || msg.auto.precedence_bulk,
                today,
            },
        );
        let history = if let Some(CaseAction::Update { case_id, .. }) = &decision.case {
            Store::case_history(tx, *case_id, HISTORY_LINES)
                .await?
                .into_iter()
                .map(|(date, direction, subject)| HistoryLine { date: fmt_ts(date), direction, subject: subject.unwrap_or_default() })
                .collect()
        } else {
            let mut h = Vec::new();
            for (hit, _) in &hits {
                if let Some((date, direction, subject)) = Store::history_line_of(tx, &hit.message_id).await? {
                    h.push(HistoryLine { date: fmt_ts(date), direction, subject: subject.unwrap_or_default() });
                }
            }
            h
        };

        let outcome = self.apply(tx, chain, id, msg, &l, &cls, client.as_ref(), &invoices, &decision, history, today, checked, &open_cases).await?;
        let Some((outcome, written)) = outcome else {
            return Ok(None);
        };
        let mut effects = Effects::default();
        if let Some(CaseAction::Open { .. }) = &decision.case {
            effects.owners.extend(decision.owner_id.clone());
        }
        effects.owners.extend(decision.tasks.iter().filter_map(|t| t.owner_id.clone()));
        if l.method == LinkMethod::InvoiceNumber && l.confidence >= 0.85 {
            if let (Some(from), Some(c)) = (&msg.from, &l.client_id) {
                effects.contacts.push((from.clone(), c.clone()));
            }
        }
        tracing::info!(category = outcome.category.as_deref().unwrap_or("-"), disposition = %outcome.disposition, case = outcome.case_id, "processed");
        Ok(Some((outcome, written, effects)))
    }

    /// Pauses reminders on `invoices` (a dated, audited block).
    #[allow(clippy::too_many_arguments)]
    async fn block_reminders(&self, tx: &mut Tx, chain: &mut Chain, invoices: &[InvoiceNumber], reason: &str, case_id: Option<i64>, message: i64, today: NaiveDate, until: Option<NaiveDate>) -> Result<()> {
        for (n, bid) in self.store.add_blocks(tx, invoices, reason, case_id, Some(message), today, until).await? {
            chain.append(
                tx,
                Event {
                    actor: &Actor::Policy("reminders".into()),
                    case_id,
                    entity: "reminder_block",
                    entity_id: bid.to_string(),
                    action: "created",
                    detail: json!({"invoice": n.as_str(), "reason": reason, "from": today.to_string(), "until": until.map(|u| u.to_string()), "message": message}),
                },
            )
            .await?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        tx: &mut Tx,
        chain: &mut Chain,
        id: i64,
        msg: &Message,
        l: &Link,
        cls: &Classification,
        client: Option<&Client>,
        invoices: &[crate::store::ledger::Invoice],
        d: &Decision,
        mut history: Vec<HistoryLine>,
        today: NaiveDate,
        checked: bool,
        open_cases: &[decide::OpenCase],
    ) -> Result<Option<(Outcome, Option<Written>)>> {
        let store = &self.store;
        let agent = Actor::Agent;
        let routing = Actor::Policy("routing".into());

        // The message must still wait: if another worker already processed
        // it, nothing else happens (the transaction is dropped). Its row is
        // written once, at the end, with the case it went to: the flow's
        // transactions are serialised (SQLite's write lock, PostgreSQL's
        // case-writes lock), so nobody processes it in between. A batch
        // reads this for all its messages at once (`checked`).
        if !checked {
            let state: Option<String> = sqlx::query_scalar("SELECT state FROM messages WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
            if state.as_deref() != Some("accepted") {
                return Ok(None);
            }
        }
        self.store.link_message_invoices(tx, id, &l.invoices).await?;
        if l.method == LinkMethod::InvoiceNumber && l.confidence >= 0.85 {
            if let (Some(from), Some(c)) = (&msg.from, &l.client_id) {
                // A known address is already stored (the insert would do nothing).
                if !self.dir.contacts.contains_key(from) {
                    store.add_contact(tx, from, c, "inbound-invoice-number").await?;
                }
            }
        }

        // The case.
        let language = pick_language(cls, client);
        let mut case_id = None;
        let (mut priority, mut priority_reason) = (0, String::new());
        match &d.case {
            Some(CaseAction::Open { kind, category, status, priority: p, priority_reason: why, at_stake, disputed }) => {
                let client = client.ok_or_else(|| StoreError::Invalid("a case needs a client".into()))?;
                let cid = store
                    .insert_case(
                        tx,
                        &NewCase {
                            kind: *kind,
                            client_id: &client.id,
                            category: category.as_str(),
                            status: *status,
                            owner_id: d.owner_id.as_deref(),
                            priority: *p,
                            priority_reason: why,
                            amount_cents: at_stake.cents(),
                            disputed_cents: disputed.map(|m| m.cents()),
                            language: language.as_str(),
                            deadline: self.policy.sla_deadline(*status, today),
                            client_wrote_at: msg.date.map(|d| d.timestamp()),
                        },
                        &l.invoices,
                        &routing.label(),
                    )
                    .await?;
                chain.append(
                    tx,
                    Event {
                        actor: &routing,
                        case_id: Some(cid),
                        entity: "case",
                        entity_id: cid.to_string(),
                        action: "opened",
                        detail: json!({"message": id, "kind": kind.as_str(), "category": category.as_str(), "status": status.as_str(), "owner": d.owner_id, "priority": p, "priority_reason": why, "invoices": l.invoices, "reasons": d.reasons}),
                    },
                )
                .await?;
                if *kind == crate::flow::decide::CaseKind::Dispute {
                    self.block_reminders(tx, chain, &l.invoices, "dispute", Some(cid), id, today, None).await?;
                }
                (priority, priority_reason) = (*p, why.clone());
                case_id = Some(cid);
            }
            Some(CaseAction::Update { case_id: cid, to_status, add_invoices }) => {
                store.add_case_invoices(tx, *cid, add_invoices).await?;
                store.touch_case(tx, *cid, msg.date.map(|d| d.timestamp())).await?;
                chain.append(tx, Event { actor: &agent, case_id: Some(*cid), entity: "case", entity_id: cid.to_string(), action: "message_attached", detail: json!({"message": id, "category": cls.category.as_str(), "added_invoices": add_invoices}) }).await?;
                // The case as read for `decide` in this transaction (nothing
                // above changed its status, kind or priority); a case found
                // only through the thread is read here.
                let (from, dispute, p, why) = match open_cases.iter().find(|c| c.id == *cid) {
                    Some(c) => (c.status, c.kind == crate::flow::decide::CaseKind::Dispute, c.priority, c.priority_reason.clone()),
                    None => {
                        let c = Store::case_in(tx, *cid).await?;
                        let status: crate::domain::Status = c.status.parse().map_err(|e: crate::domain::DomainError| StoreError::Invalid(e.to_string()))?;
                        (status, c.kind == "dispute", c.priority, c.priority_reason)
                    }
                };
                if let Some(to) = to_status {
                    store.set_case_status(tx, *cid, from, *to, &Actor::Policy("statuses".into()).label(), Some("client replied")).await?;
                    chain.append(tx, Event { actor: &Actor::Policy("statuses".into()), case_id: Some(*cid), entity: "case", entity_id: cid.to_string(), action: "status_changed", detail: json!({"from": from.as_str(), "to": to.as_str(), "why": "client replied", "message": id}) }).await?;
                    store.set_deadline(tx, *cid, self.policy.sla_deadline(*to, today)).await?;
                }
                if dispute && !add_invoices.is_empty() {
                    self.block_reminders(tx, chain, add_invoices, "dispute", Some(*cid), id, today, None).await?;
                }
                (priority, priority_reason) = (p, why);
                case_id = Some(*cid);
            }
            None => {}
        }

        // Promises, payment notices, tasks.
        if let Some((nums, date)) = &d.promise {
            let date_s = date.map(|d| d.to_string());
            store.record_promise(tx, nums, date_s.as_deref()).await?;
            chain.append(tx, Event { actor: &agent, case_id, entity: "invoice", entity_id: join(nums), action: "promise_recorded", detail: json!({"message": id, "promised_date": date_s}) }).await?;
            let until = date.unwrap_or(today) + chrono::Duration::days(self.policy.reminders.pauses.promise_grace_days);
            self.block_reminders(tx, chain, nums, "promise to pay", case_id, id, today, Some(until)).await?;
        }
        if !d.payment_notice.is_empty() {
            store.record_payment_notice(tx, &d.payment_notice).await?;
            chain.append(tx, Event { actor: &agent, case_id, entity: "invoice", entity_id: join(&d.payment_notice), action: "payment_notice_recorded", detail: json!({"message": id}) }).await?;
            let until = today + chrono::Duration::days(self.policy.reminders.pauses.payment_notice_grace_days);
            self.block_reminders(tx, chain, &d.payment_notice, "payment notice", case_id, id, today, Some(until)).await?;
        }
        for t in &d.tasks {
            let tid = store
                .insert_task(
                    tx,
                    &NewTask {
                        case_id,
                        invoice_number: l.invoices.first().map(|i| i.as_str()),
                        message_id: Some(id),
                        kind: t.kind.as_str(),
                        owner_id: t.owner_id.as_deref(),
                        note: &t.note,
                        due_date: t.due_date.map(|d| d.to_string()),
                    },
                )
                .await?;
            chain.append(tx, Event { actor: &routing, case_id, entity: "task", entity_id: tid.to_string(), action: "created", detail: json!({"kind": t.kind.as_str(), "owner": t.owner_id, "message": id}) }).await?;
        }

        // Drafts.
        let mut drafts = Vec::new();
        let mut written = None;
        if !d.drafts.is_empty() {
            if let Some(client) = client {
                let owner_name = d.owner_id.as_ref().and_then(|o| self.names.get(o)).cloned();
                history.push(HistoryLine { date: fmt_ts(msg.date.map(|d| d.timestamp())), direction: "in".into(), subject: msg.subject.clone() });
                let facts = DraftFacts {
                    language,
                    company: self.company.name.clone(),
                    signer: self.company.signer.clone(),
                    client_name: client.name.clone(),
                    strategic: client.strategic,
                    contact_name: msg.from_name.clone().filter(|n| !n.trim().is_empty() && !n.contains('@')),
                    contact_email: msg.from.as_ref().map(|f| f.to_string()),
                    category: cls.category,
                    case_id,
                    owner_name,
                    priority,
                    priority_reason,
                    invoices: invoices.iter().map(|i| (i.clone(), NaiveDate::parse_from_str(&i.due_date, "%Y-%m-%d").map(|due| (today - due).num_days()).unwrap_or(0))).collect(),
                    disputed_amount: cls.facts.disputed_amount,
                    promised_date: cls.facts.promised_date,
                    asks: cls.facts.asks.clone(),
                    reasons: cls.reasons.clone(),
                    source: cls.source.clone(),
                    confidence: cls.confidence,
                    history,
                };
                let reply_to: Option<EmailAddress> = msg.reply_to.clone().or_else(|| msg.from.clone());
                let mut rendered = Vec::new();
                for kind in &d.drafts {
                    let (text, kind_s, to) = match kind {
                        DraftKind::Reply => (self.drafter.reply(&facts, &msg.subject), "reply", reply_to.as_ref().map(|a| a.to_string())),
                        DraftKind::Brief => (self.drafter.brief(&facts), "brief", None),
                    };
                    let text = text.map_err(|e| StoreError::Invalid(e.to_string()))?;
                    if kind_s == "reply" && to.is_none() {
                        continue; // nobody to answer
                    }
                    rendered.push((kind_s, to, text));
                }
                // The message's drafts in one statement, then one audit event each.
                let rows: Vec<NewDraft> = rendered
                    .iter()
                    .map(|(kind_s, to, text)| NewDraft { case_id, message_id: Some(id), kind: kind_s, language: language.as_str(), to_addr: to.as_deref(), subject: &text.subject, body: &text.body, template: &text.template })
                    .collect();
                let ids = store.insert_drafts(tx, &rows).await?;
                drop(rows);
                let mut texts = Vec::new();
                for (did, (kind_s, _, text)) in ids.into_iter().zip(rendered) {
                    chain.append(tx, Event { actor: &agent, case_id, entity: "draft", entity_id: did.to_string(), action: "created", detail: json!({"kind": kind_s, "template": text.template, "message": id}) }).await?;
                    drafts.push(did);
                    texts.push((did, if kind_s == "reply" { Kind::Reply } else { Kind::Brief }, text));
                }
                written = Some((facts, texts));
            }
        }
        let parsed = serde_json::to_string(msg).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let done = sqlx::query(
            "UPDATE messages SET state = 'processed', subject = $2, from_addr = $3, date_at = $4, client_id = $5, link_method = $6, \
             link_confidence = $7, link_notes = $8, category = $9, classification = $10, disposition = $11, owner_id = $12, parsed = $13, processed_at = $14, case_id = $15 \
             WHERE id = $1 AND state = 'accepted'",
        )
        .bind(id)
        .bind(&msg.subject)
        .bind(msg.from.as_ref().map(|f| f.to_string()))
        .bind(msg.date.map(|d| d.timestamp()))
        .bind(l.client_id.clone())
        .bind(l.method.as_str())
        .bind(l.confidence as f64)
        .bind(serde_json::to_string(&l.notes).unwrap_or_default())
        .bind(cls.category.as_str())
        .bind(serde_json::to_string(cls).unwrap_or_default())
        .bind(d.disposition.as_str())
        .bind(d.owner_id.clone())
        .bind(parsed)
        .bind(crate::store::now())
        .bind(case_id)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() != 1 {
            // Cannot happen while flow transactions are serialised; if it
            // does, everything this message wrote is rolled back.
            return Err(StoreError::Conflict(format!("message {id} was processed by another worker meanwhile")));
        }
        chain.append(
            tx,
            Event {
                actor: &agent,
                case_id,
                entity: "message",
                entity_id: id.to_string(),
                action: "processed",
                detail: json!({"link": l.method.as_str(), "link_confidence": l.confidence, "invoices": l.invoices, "client": l.client_id, "category": cls.category.as_str(), "classifier": cls.source, "rules": cls.reasons, "disposition": d.disposition.as_str(), "owner": d.owner_id}),
            },
        )
        .await?;
        Ok(Some((
            Outcome {
                message: id,
                direction: "in".into(),
                category: Some(cls.category.as_str().into()),
                disposition: d.disposition.as_str().into(),
                case_id,
                owner_id: d.owner_id.clone(),
                invoices: l.invoices.iter().map(|i| i.to_string()).collect(),
                drafts,
            },
            written,
        )))
    }

    /// Replaces a pending template draft by the model's text from the same
    /// facts, or keeps it and flags it (`+llm-refused`) when the model's text
    /// is not grounded or the call failed. Either way an audit event says so;
    /// the draft stays pending (only an approval sends).
    async fn llm_rewrite(&self, ld: &LlmDrafter, did: i64, kind: Kind, facts: &DraftFacts, text: &DraftText) -> Result<()> {
        let res = ld.write(&self.drafter, kind, facts, text).await;
        let mut tx = self.store.begin().await?;
        let agent = Actor::Agent;
        match res {
            Ok(new) => {
                sqlx::query("UPDATE drafts SET body = $1, template = $2 WHERE id = $3 AND status = 'pending'").bind(&new.body).bind(&new.template).bind(did).execute(&mut *tx).await?;
                audit::append(&mut tx, self.store.backend, Event { actor: &agent, case_id: facts.case_id, entity: "draft", entity_id: did.to_string(), action: "rewritten_by_llm", detail: json!({"kind": kind.as_str(), "template": new.template, "replaces": text.template}) }).await?;
            }
            Err(e) => {
                let flagged = format!("{}+llm-refused", text.template);
                sqlx::query("UPDATE drafts SET template = $1 WHERE id = $2 AND status = 'pending'").bind(&flagged).bind(did).execute(&mut *tx).await?;
                audit::append(&mut tx, self.store.backend, Event { actor: &agent, case_id: facts.case_id, entity: "draft", entity_id: did.to_string(), action: "llm_draft_refused", detail: json!({"kind": kind.as_str(), "template": flagged, "why": e.to_string()}) }).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn user_names(store: &Store) -> Result<HashMap<String, String>> {
    Ok(store.users().await?.into_iter().map(|u| (u.id, u.name)).collect())
}
/// The facts and the template drafts of a message, for the model's rewrite.
type Written = (DraftFacts, Vec<(i64, Kind, DraftText)>);

/// Seconds spent in each pure stage of the flow (see [`Pipeline::time_stages`]).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageSeconds {
    pub parse: f64,
    pub link: f64,
    pub classify: f64,
}

/// Messages per transaction when the classifier is local (see
/// [`Pipeline::run_pending`]): large enough that the commit's cost is shared,
/// small enough that the write lock is held for tens of milliseconds.
pub const BATCH: i64 = 64;

/// An inbound message linked and classified, waiting for its decision.
struct Prepared {
    hits: Vec<(crate::flow::link::ThreadHit, Option<i64>)>,
    link: Link,
    client: Option<Client>,
    cls: Classification,
    today: NaiveDate,
}

/// What a message adds to the pipeline's memory once it is stored.
#[derive(Default)]
struct Effects {
    /// Owners of the case it opened and of its tasks (one more load each).
    owners: Vec<String>,
    /// Addresses now known to belong to a client.
    contacts: Vec<(EmailAddress, String)>,
}

fn pick_language(cls: &Classification, _client: Option<&Client>) -> Language {
    // Answer in the language the client wrote in (the classifier detects it).
    cls.facts.language
}

fn join(n: &[InvoiceNumber]) -> String {
    n.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(";")
}

fn fmt_ts(t: Option<i64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "?".into())
}
