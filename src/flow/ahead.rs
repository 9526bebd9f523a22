//! ahead: runs the flow's pure stages (parse, link, classify with the rules)
//! for the next batch on a thread of its own, while the pipeline writes the
//! current batch.
//!
//! Why: with the rules, parsing and classifying are about a third of the
//! flow's time, and the rest is a chain of dependent database statements on
//! one CPU (see `cpu`). Done ahead on the spare CPU, they come off that chain.
//!
//! What is guessed, and how the guess is checked. The thread links each
//! message against the ledger and contacts as they were when the run began,
//! and without its thread history (that is in the database, and the messages
//! before it may still be being written). It classifies with what that link
//! found: an invoice or not, a known client or not, and the message's day.
//! The pipeline then links every message again, in order, inside its batch's
//! transaction (as it always did), and keeps the guessed classification only
//! when those three facts are the same; otherwise it classifies again. The
//! rules' classification is a pure function of the message and those facts,
//! so the outcome is the one the pipeline would reach alone. The parsed
//! message is kept as it is: parsing depends on the bytes only.
//!
//! One thread per run of [`crate::flow::pipeline::Pipeline::run_pending`],
//! started when there is a batch to prepare; it ends when the run drops it.

use crate::flow::classify::{Classification, Classifier, ClassifyInput};
use crate::flow::link::{self, Directory};
use crate::flow::parse::{self, Message};
use crate::store::ledger::Client;
use crate::store::messages::Accepted;
use chrono::{NaiveDate, Utc};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum AheadError {
    #[error("cannot start the look-ahead thread: {0}")]
    Start(std::io::Error),
}

/// A classification made ahead, and what it was made with.
#[derive(Debug, Clone)]
pub struct Guess {
    pub has_invoice: bool,
    pub known_client: bool,
    pub today: NaiveDate,
    pub classification: Classification,
}

impl Guess {
    /// The guess, if it was made with the same facts the pipeline has now.
    pub fn holds(self, has_invoice: bool, known_client: bool, today: NaiveDate) -> Option<Classification> {
        (self.has_invoice == has_invoice && self.known_client == known_client && self.today == today).then_some(self.classification)
    }
}

/// One message of a batch, prepared ahead.
#[derive(Debug)]
pub struct Early {
    pub id: i64,
    pub message: Message,
    /// None for our own mail and for a message linked by hand (the
    /// pipeline classifies those itself), or when the classifier is not local.
    pub guess: Option<Guess>,
}

/// The day a message is classified as of: its own date, else today.
pub fn day_of(msg: &Message) -> NaiveDate {
    msg.date.map(|d| d.date_naive()).unwrap_or_else(|| Utc::now().date_naive())
}

/// The look-ahead's view of the company: the pipeline's as the run began
/// (shared; the pipeline copies its own when it learns a contact meanwhile).
pub struct Snapshot {
    pub dir: Arc<Directory>,
    pub clients: Arc<HashMap<String, Client>>,
}

/// Parses one accepted message and, when it is a client's mail that the
/// pipeline links itself, links and classifies it against `snap`.
pub fn prepare(acc: &Accepted, snap: &Snapshot, classifier: &dyn Classifier) -> Early {
    let message = parse::parse(&acc.raw);
    let guess = if acc.direction == "out" || acc.hand_linked_client.is_some() {
        None
    } else {
        let l = link::link(&message, &snap.dir, &[]);
        let has_invoice = !l.invoices.is_empty();
        let known_client = l.client_id.as_ref().is_some_and(|c| snap.clients.contains_key(c));
        let today = day_of(&message);
        classifier
            .classify_now(&ClassifyInput { message: &message, reference_date: today, has_invoice, known_client })
            .map(|classification| Guess { has_invoice, known_client, today, classification })
    };
    Early { id: acc.id, message, guess }
}

struct Job {
    batch: Vec<Accepted>,
    reply: tokio::sync::oneshot::Sender<Vec<Early>>,
}

/// The look-ahead thread. Dropping it ends the thread (after the batch it
/// is on).
pub struct Ahead {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The prepared batch, when the thread has done it.
pub type Pending = tokio::sync::oneshot::Receiver<Vec<Early>>;

impl Ahead {
    /// Starts the thread, on the spare CPU when the process is kept on one
    /// (`cpu::move_current_thread_to_spare`).
    pub fn start(classifier: Arc<dyn Classifier>, snap: Snapshot) -> Result<Ahead, AheadError> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("flow-ahead".into())
            .spawn(move || {
                match crate::cpu::move_current_thread_to_spare() {
                    Ok(cpu) => tracing::debug!(cpu, "look-ahead thread started"),
                    Err(e) => tracing::debug!(error = %e, "look-ahead thread stays on the flow's CPU"),
                }
                for job in rx {
                    let early = job.batch.iter().map(|a| prepare(a, &snap, classifier.as_ref())).collect();
                    // The pipeline may have given up on this batch (it failed
                    // and is processed again one message at a time).
                    let _ = job.reply.send(early);
                }
            })
            .map_err(AheadError::Start)?;
        Ok(Ahead { jobs: Some(tx), thread: Some(thread) })
    }

    /// Queues `batch` (its messages are copied). The answer comes in order.
    pub fn submit(&self, batch: &[Accepted]) -> Pending {
        let (reply, pending) = tokio::sync::oneshot::channel();
        if let Some(jobs) = &self.jobs {
            // A send fails only when the thread is gone (it panicked): the
            // pending answer then reports it, and the pipeline prepares the
            // batch itself.
            let _ = jobs.send(Job { batch: batch.to_vec(), reply });
        }
        pending
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::rules::RulesClassifier;

    fn accepted(id: i64, direction: &str, raw: &str) -> Accepted {
        Accepted { id, direction: direction.into(), raw: raw.as_bytes().to_vec(), attempts: 0, hand_linked_client: None }
    }

    const PRICE: &str = "From: Paul <paul@client.example>\r\nTo: compta@us.example\r\nSubject: Facture FA-2026-0042\r\nDate: Tue, 3 Nov 2026 10:00:00 +0100\r\nMessage-ID: <a1@client.example>\r\n\r\nBonjour,\r\nle prix unitaire facture ne correspond pas au devis accepte.\r\nMerci de nous envoyer un avoir.\r\n";

    #[test]
    fn a_guess_is_the_classification_of_the_same_facts_and_only_those() {
        let rules: Arc<dyn Classifier> = Arc::new(RulesClassifier::embedded());
        let snap = Snapshot { dir: Arc::default(), clients: Arc::default() };
        let e = prepare(&accepted(7, "in", PRICE), &snap, rules.as_ref());
        assert_eq!(e.id, 7);
        let g = e.guess.expect("a client's mail is classified ahead");
        assert!(!g.has_invoice && !g.known_client, "an empty ledger: no invoice, no client");
        assert_eq!(g.today, NaiveDate::from_ymd_opt(2026, 11, 3).unwrap());
        let direct = rules.classify_now(&ClassifyInput { message: &e.message, reference_date: g.today, has_invoice: false, known_client: false }).unwrap();
        assert_eq!(format!("{:?}", g.classification), format!("{direct:?}"));
        assert!(g.clone().holds(false, false, g.today).is_some());
        assert!(g.clone().holds(true, false, g.today).is_none(), "an invoice found later: classify again");
        assert!(g.clone().holds(false, true, g.today).is_none(), "a known client found later: classify again");
        let tomorrow = g.today.succ_opt().unwrap();
        assert!(g.holds(false, false, tomorrow).is_none(), "another day: classify again");
    }

    #[test]
    fn our_own_mail_and_hand_links_are_only_parsed() {
        let rules: Arc<dyn Classifier> = Arc::new(RulesClassifier::embedded());
        let snap = Snapshot { dir: Arc::default(), clients: Arc::default() };
        assert!(prepare(&accepted(1, "out", PRICE), &snap, rules.as_ref()).guess.is_none());
        let mut hand = accepted(2, "in", PRICE);
        hand.hand_linked_client = Some("C1".into());
        let e = prepare(&hand, &snap, rules.as_ref());
        assert!(e.guess.is_none());
        assert_eq!(e.message.subject, "Facture FA-2026-0042");
    }

    #[test]
    fn the_thread_answers_every_batch_in_order_and_ends_when_dropped() {
        let rules: Arc<dyn Classifier> = Arc::new(RulesClassifier::embedded());
        let ahead = Ahead::start(rules, Snapshot { dir: Arc::default(), clients: Arc::default() }).unwrap();
        let a = ahead.submit(&[accepted(1, "in", PRICE), accepted(2, "out", PRICE)]);
        let b = ahead.submit(&[accepted(3, "in", PRICE)]);
        let (a, b) = (a.blocking_recv().unwrap(), b.blocking_recv().unwrap());
        assert_eq!(a.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(b.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3]);
        drop(ahead); // joins the thread: the test would hang if it did not end
    }
}
