//! remind: the reminder schedule (dunning) of `policies/reminders.toml`.
//! [`plan`] is pure: from the unpaid invoices, the levels each has already
//! had and the blocks in force, it says for one day which level each invoice
//! is at. [`run`] turns the plan into drafts (one per client, through the
//! approval gate like any draft) and tasks, records every (invoice, level)
//! once so a second run the same day creates nothing, and after downtime
//! produces only each invoice's current level (the missed ones are recorded
//! as skipped, never sent late). Amounts in drafts come from
//! `policy::late_payment`, never from a model.

use crate::domain::{Language, Money};
use crate::flow::pipeline::Company;
use crate::policy::late_payment::LateCharges;
use crate::policy::{Policy, ReminderAction, Reminders};
use crate::store::audit::{self, Actor, Event};
use crate::store::cases::{NewDraft, NewTask};
use crate::store::{Store, StoreError};
use chrono::NaiveDate;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum RemindError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Workflow(#[from] crate::flow::workflow::WorkflowError),
    #[error("cannot read prompt {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("invalid reminder template {name}: {reason}")]
    Template { name: String, reason: String },
    #[error("pre-approval of {level} reminders by {user}: {reason}")]
    PreApproval { level: String, user: String, reason: String },
}

/// An unpaid invoice as the plan sees it.
#[derive(Debug, Clone)]
pub struct DueInvoice {
    pub number: String,
    pub client_id: String,
    pub due_date: NaiveDate,
    /// Levels already handled (drafted, tasked or skipped).
    pub done: BTreeSet<String>,
    /// Why reminders are blocked today, if they are.
    pub blocked: Option<String>,
}

/// What happens to one (invoice, level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// Listed in the client's reminder draft.
    Draft,
    /// A call or manual-handling task.
    Task,
    /// The client is handled by hand: a task instead of a draft.
    ByHand,
    /// Missed (downtime) or excluded by the client's override: never sent.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub invoice: String,
    pub level: String,
    pub action: ReminderAction,
    pub days: i64,
    pub outcome: StepOutcome,
    pub why: String,
}

/// One client's reminders for the day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClientPlan {
    pub client_id: String,
    pub steps: Vec<Step>,
    /// (invoice, reason) left alone today.
    pub blocked: Vec<(String, String)>,
}

/// The day's plan, per client (pure).
pub fn plan(rem: &Reminders, invoices: &[DueInvoice], today: NaiveDate) -> Vec<ClientPlan> {
    let mut by_client: BTreeMap<&str, ClientPlan> = BTreeMap::new();
    for inv in invoices {
        let cp = by_client.entry(&inv.client_id).or_insert_with(|| ClientPlan { client_id: inv.client_id.clone(), ..Default::default() });
        if let Some(why) = &inv.blocked {
            cp.blocked.push((inv.number.clone(), why.clone()));
            continue;
        }
        let days = (today - inv.due_date).num_days();
        let cs = rem.clients.iter().find(|c| c.id == inv.client_id);
        let min_day = cs.and_then(|c| c.min_day);
        let manual = cs.map(|c| c.manual).unwrap_or(false);
        let reached: Vec<_> = rem.levels.iter().filter(|l| l.day <= days && !inv.done.contains(&l.name)).collect();
        let usable = |l: &crate::policy::ReminderLevel| min_day.map(|m| l.day >= m).unwrap_or(true) && !(l.day < 0 && days >= 0);
        let current = reached.iter().copied().filter(|l| usable(l)).max_by_key(|l| l.day);
        for l in &reached {
            let step = |outcome, why: String| Step { invoice: inv.number.clone(), level: l.name.clone(), action: l.action, days, outcome, why };
            if Some(l.name.as_str()) == current.map(|c| c.name.as_str()) {
                let outcome = match (l.action, manual) {
                    (ReminderAction::Email, true) => StepOutcome::ByHand,
                    (ReminderAction::Email, false) => StepOutcome::Draft,
                    _ => StepOutcome::Task,
                };
                cp.steps.push(step(outcome, format!("day {days} from due date: level {}", l.name)));
            } else if !usable(l) && l.day < 0 && days >= 0 {
                cp.steps.push(step(StepOutcome::Skipped, "invoice already due: pre-due notice no longer useful".into()));
            } else if !usable(l) {
                cp.steps.push(step(StepOutcome::Skipped, format!("client override: no reminder before day {}", min_day.unwrap_or(0))));
            } else {
                cp.steps.push(step(StepOutcome::Skipped, format!("missed; superseded by {}", current.map(|c| c.name.as_str()).unwrap_or("?"))));
            }
        }
    }
    by_client.into_values().filter(|c| !c.steps.is_empty() || !c.blocked.is_empty()).collect()
}

const EMBEDDED: &[(&str, &str)] = &[("reminder.v1.fr", include_str!("../../prompts/reminder.v1.fr.tera")), ("reminder.v1.en", include_str!("../../prompts/reminder.v1.en.tera"))];

/// Renders reminder drafts from `prompts/reminder.v1.{fr,en}.tera`.
pub struct ReminderWriter {
    tera: tera::Tera,
}

#[derive(Debug, Clone, Serialize)]
struct Line {
    number: String,
    issue_date: String,
    due_date: String,
    days: i64,
    amount: String,
    currency: String,
}

/// An invoice line of a reminder with its late charges.
#[derive(Debug, Clone)]
pub struct ReminderLine {
    pub number: String,
    pub issue_date: String,
    pub due_date: NaiveDate,
    pub due: Money,
    pub currency: String,
    pub charges: LateCharges,
}

impl ReminderWriter {
    pub fn load(dir: Option<&Path>) -> Result<Self, RemindError> {
        let mut tera = tera::Tera::default();
        for (name, text) in EMBEDDED {
            let text = match dir.map(|d| d.join(format!("{name}.tera"))) {
                Some(p) if p.exists() => std::fs::read_to_string(&p).map_err(|source| RemindError::Read { file: p.display().to_string(), source })?,
                _ => text.to_string(),
            };
            tera.add_raw_template(name, &text).map_err(|e| RemindError::Template { name: name.to_string(), reason: format!("{e:?}") })?;
        }
        Ok(ReminderWriter { tera })
    }

    /// Subject, body and template name of one client's reminder.
    pub fn write(&self, lang: Language, level: &str, lines: &[ReminderLine], rate: &str, company: &Company) -> Result<(String, String, String), RemindError> {
        let fmt_date = |d: &str| match (lang, d.parse::<NaiveDate>()) {
            (Language::Fr, Ok(dt)) => dt.format("%d/%m/%Y").to_string(),
            (_, Ok(dt)) => dt.format("%d %b %Y").to_string(),
            (_, Err(_)) => d.to_string(),
        };
        let money = |m: Money| if lang == Language::Fr { m.fr() } else { m.en() };
        let line = |l: &ReminderLine| Line {
            number: l.number.clone(),
            issue_date: fmt_date(&l.issue_date),
            due_date: fmt_date(&l.due_date.to_string()),
            days: l.charges.days_late,
            amount: money(l.due),
            currency: l.currency.clone(),
        };
        let overdue: Vec<&ReminderLine> = lines.iter().filter(|l| l.charges.days_late > 0).collect();
        let upcoming: Vec<&ReminderLine> = lines.iter().filter(|l| l.charges.days_late == 0).collect();
        let sum = |f: &dyn Fn(&ReminderLine) -> i64| Money(overdue.iter().map(|l| f(l)).sum());
        let mut c = tera::Context::new();
        c.insert("level", level);
        c.insert("overdue", &overdue.iter().map(|l| line(l)).collect::<Vec<_>>());
        c.insert("upcoming", &upcoming.iter().map(|l| line(l)).collect::<Vec<_>>());
        c.insert("total_due", &money(sum(&|l| l.due.cents())));
        c.insert("total_penalties", &money(sum(&|l| l.charges.penalties.cents())));
        c.insert("total_indemnity", &money(sum(&|l| l.charges.indemnity.cents())));
        c.insert("rate", rate);
        c.insert("company", &company.name);
        c.insert("signer", &company.signer);
        let name = format!("reminder.v1.{lang}");
        let body = self.tera.render(&name, &c).map_err(|e| RemindError::Template { name: name.clone(), reason: format!("{e:?}") })?.trim_start().to_string();
        let numbers: Vec<&str> = lines.iter().map(|l| l.number.as_str()).collect();
        let plural = numbers.len() > 1;
        let subject = match (lang, overdue.is_empty()) {
            (Language::Fr, true) => format!("Rappel d'échéance — facture{} {}", if plural { "s" } else { "" }, numbers.join(", ")),
            (Language::Fr, false) => format!("{} — facture{} {}", if level == "first" { "Relance" } else { "Deuxième relance" }, if plural { "s" } else { "" }, numbers.join(", ")),
            (_, true) => format!("Payment reminder — invoice{} {} coming due", if plural { "s" } else { "" }, numbers.join(", ")),
            (_, false) => format!("{} — invoice{} {}", if level == "first" { "Payment reminder" } else { "Second payment reminder" }, if plural { "s" } else { "" }, numbers.join(", ")),
        };
        Ok((subject, body, name))
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemindReport {
    pub date: String,
    pub invoices_considered: usize,
    pub drafts: Vec<i64>,
    pub tasks: Vec<i64>,
    pub skipped: usize,
    pub blocked: usize,
    pub pre_approved: Vec<i64>,
    pub sla: crate::flow::workflow::SlaReport,
    pub seconds: f64,
}

/// Runs the day's reminders and the service-level pass, as of `today`.
#[tracing::instrument(skip_all, fields(date = %today))]
pub async fn run(store: &Store, policy: &Policy, writer: &ReminderWriter, company: &Company, today: NaiveDate) -> Result<RemindReport, RemindError> {
    let t0 = std::time::Instant::now();
    let rem = &policy.reminders;
    let mut rep = RemindReport { date: today.to_string(), ..Default::default() };
    let horizon = today + chrono::Duration::days(-rem.levels.iter().map(|l| l.day).min().unwrap_or(0).min(0));
    let rows = store.due_invoices(horizon).await?;
    let mut done: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (inv, level) in store.reminder_levels_done().await? {
        done.entry(inv).or_default().insert(level);
    }
    let mut blocks: BTreeMap<String, String> = BTreeMap::new();
    for b in store.active_blocks(today).await? {
        let until = b.until_date.as_deref().map(|u| format!(" until {u}")).unwrap_or_default();
        let why = match b.case_id {
            Some(c) => format!("{} (case {c}){until}", b.reason),
            None => format!("{}{until}", b.reason),
        };
        blocks.entry(b.invoice_number.clone()).or_insert(why);
    }
    let due: Vec<DueInvoice> = rows
        .iter()
        .map(|r| DueInvoice { number: r.number.clone(), client_id: r.client_id.clone(), due_date: r.due_date, done: done.remove(&r.number).unwrap_or_default(), blocked: blocks.get(&r.number).cloned() })
        .collect();
    rep.invoices_considered = due.len();
    let rows: BTreeMap<&str, &crate::store::workflow::DueRow> = rows.iter().map(|r| (r.number.as_str(), r)).collect();
    let clients: BTreeMap<String, crate::store::ledger::Client> = store.clients().await?.into_iter().map(|c| (c.id.clone(), c)).collect();
    let staff = store.staff().await?;
    let owner = crate::flow::decide::assign(policy, rem.owner_role, None, &staff).map(|(id, _)| id);
    let actor = Actor::Policy("reminders".into());

    for cp in plan(rem, &due, today) {
        rep.blocked += cp.blocked.len();
        if cp.steps.is_empty() {
            continue;
        }
        let client = clients.get(&cp.client_id);
        let lang = client.map(|c| c.language).unwrap_or_default();
        let client_name = client.map(|c| c.name.clone()).unwrap_or_else(|| cp.client_id.clone());
        let line_of = |s: &Step| {
            let r = rows[s.invoice.as_str()];
            ReminderLine {
                number: r.number.clone(),
                issue_date: r.issue_date.clone(),
                due_date: r.due_date,
                due: Money(r.due_cents),
                currency: r.currency.clone(),
                charges: policy.late_payment.charges(&cp.client_id, Money(r.due_cents), r.due_date, today),
            }
        };
        let mut tx = store.begin().await?;
        let mut conflict = false;
        let mut new_drafts = vec![];
        let mut new_tasks = vec![];

        // One draft for everything the client gets by mail today.
        let mail: Vec<&Step> = cp.steps.iter().filter(|s| s.outcome == StepOutcome::Draft).collect();
        if !mail.is_empty() {
            let lines: Vec<ReminderLine> = mail.iter().map(|s| line_of(s)).collect();
            // The strongest level sets the tone ("second" once any invoice is there).
            let level = mail.iter().max_by_key(|s| s.days).map(|s| s.level.clone()).unwrap_or_default();
            let rate = rate_label(policy, &cp.client_id, today);
            let (subject, body, template) = writer.write(lang, &level, &lines, &rate, company)?;
            let to = store.client_contact(&cp.client_id).await?;
            let did = store
                .insert_draft(&mut tx, &NewDraft { case_id: None, message_id: None, kind: "reminder", language: lang.as_str(), to_addr: to.as_deref(), subject: &subject, body: &body, template: &template })
                .await?;
            for s in &mail {
                conflict |= !store.record_reminder(&mut tx, &s.invoice, &s.level, today, "draft", Some(did), None).await?;
            }
            let levels: BTreeMap<&str, &str> = mail.iter().map(|s| (s.invoice.as_str(), s.level.as_str())).collect();
            let charges: Vec<_> = lines.iter().map(|l| json!({"invoice": l.number, "penalties_cents": l.charges.penalties.cents(), "indemnity_cents": l.charges.indemnity.cents(), "periods": l.charges.periods})).collect();
            audit::append(&mut tx, store.backend, Event { actor: &actor, case_id: None, entity: "draft", entity_id: did.to_string(), action: "reminder_drafted", detail: json!({"client": cp.client_id, "date": today.to_string(), "levels": levels, "charges": charges, "to": to.is_some()}) }).await?;
            new_drafts.push((did, mail.iter().map(|s| s.level.clone()).collect::<BTreeSet<_>>()));
        }

        // Tasks: one per client and kind of work.
        let mut groups: BTreeMap<(&str, &str), Vec<&Step>> = BTreeMap::new();
        for s in &cp.steps {
            let kind = match (s.outcome, s.action) {
                (StepOutcome::ByHand, _) => "remind_by_hand",
                (StepOutcome::Task, ReminderAction::CallTask) => "call",
                (StepOutcome::Task, _) => "manual_handling",
                _ => continue,
            };
            groups.entry((kind, s.level.as_str())).or_default().push(s);
        }
        for ((kind, level), steps) in groups {
            let lines: Vec<ReminderLine> = steps.iter().map(|s| line_of(s)).collect();
            let note = task_note(kind, level, &client_name, &lines);
            let tid = store
                .insert_task(&mut tx, &NewTask { case_id: None, invoice_number: Some(&steps[0].invoice), message_id: None, kind, owner_id: owner.as_deref(), note: &note, due_date: Some(today.to_string()) })
                .await?;
            for s in &steps {
                conflict |= !store.record_reminder(&mut tx, &s.invoice, &s.level, today, kind, None, Some(tid)).await?;
            }
            audit::append(&mut tx, store.backend, Event { actor: &actor, case_id: None, entity: "task", entity_id: tid.to_string(), action: "created", detail: json!({"kind": kind, "level": level, "client": cp.client_id, "invoices": steps.iter().map(|s| &s.invoice).collect::<Vec<_>>(), "owner": owner}) }).await?;
            new_tasks.push(tid);
        }

        let skipped: Vec<&Step> = cp.steps.iter().filter(|s| s.outcome == StepOutcome::Skipped).collect();
        for s in &skipped {
            conflict |= !store.record_reminder(&mut tx, &s.invoice, &s.level, today, "skipped", None, None).await?;
        }
        if !skipped.is_empty() {
            let what: Vec<_> = skipped.iter().map(|s| json!({"invoice": s.invoice, "level": s.level, "why": s.why})).collect();
            audit::append(&mut tx, store.backend, Event { actor: &actor, case_id: None, entity: "client", entity_id: cp.client_id.clone(), action: "reminder_levels_skipped", detail: json!({"date": today.to_string(), "skipped": what}) }).await?;
        }
        if conflict {
            // Another run recorded these levels first: keep its work, not ours.
            tx.rollback().await.map_err(StoreError::from)?;
            tracing::warn!(client = %cp.client_id, "reminder levels already recorded by another run; nothing done for this client");
            continue;
        }
        tx.commit().await.map_err(StoreError::from)?;
        rep.skipped += skipped.len();
        rep.tasks.extend(new_tasks);
        for (did, levels) in new_drafts {
            rep.drafts.push(did);
            if let Some(pa) = &rem.pre_approval {
                if levels.iter().all(|l| l == &pa.level) && pre_approve(store, policy, company, did, pa).await? {
                    rep.pre_approved.push(did);
                }
            }
        }
    }
    rep.sla = crate::flow::workflow::daily_sla(store, policy, today).await?;
    rep.seconds = t0.elapsed().as_secs_f64();
    tracing::info!(drafts = rep.drafts.len(), tasks = rep.tasks.len(), skipped = rep.skipped, blocked = rep.blocked, "reminders done");
    Ok(rep)
}

/// "12.15 % a year" as the penalty rate of the half-year of `day`.
fn rate_label(policy: &Policy, client: &str, day: NaiveDate) -> String {
    // The rate of a one-day charge is the rate in force that day.
    let c = policy.late_payment.charges(client, Money(100), day - chrono::Duration::days(1), day);
    c.periods.first().and_then(|p| p.split(" at ").nth(1)).map(|r| r.to_string()).unwrap_or_default()
}

fn task_note(kind: &str, level: &str, client: &str, lines: &[ReminderLine]) -> String {
    let what = match kind {
        "call" => "call the client about its overdue invoices (call brief below)",
        "manual_handling" => "manual handling: propose a payment plan or send a formal notice (mise en demeure)",
        _ => "this client is reminded by hand: contact it about these invoices",
    };
    let mut s = format!("{what}\nclient: {client}\nlevel: {level}\n");
    let mut total = 0;
    for l in lines {
        total += l.due.cents() + l.charges.penalties.cents() + l.charges.indemnity.cents();
        s.push_str(&format!(
            "- {} due {} ({} days late): {} EUR outstanding, penalties {} EUR, indemnity {} EUR\n",
            l.number, l.due_date, l.charges.days_late, l.due, l.charges.penalties, l.charges.indemnity
        ));
    }
    s.push_str(&format!("total claimable today: {} EUR", Money(total)));
    s
}

/// Approves a draft under a manager's standing pre-approval. Refuses (and
/// leaves the draft pending) when the named user is not a manager.
async fn pre_approve(store: &Store, policy: &Policy, company: &Company, draft_id: i64, pa: &crate::policy::PreApproval) -> Result<bool, RemindError> {
    let err = |reason: String| RemindError::PreApproval { level: pa.level.clone(), user: pa.by.clone(), reason };
    let user = store.user(&pa.by).await.map_err(|e| err(e.to_string()))?;
    if user.role != crate::domain::Role::Manager {
        tracing::warn!(user = %user.id, "pre-approval ignored: not a manager");
        return Ok(false);
    }
    let from = crate::domain::EmailAddress::parse(&company.from_address).map_err(|e| err(e.to_string()))?;
    match crate::flow::approve::approve(store, policy, &from, &company.name, draft_id, &user).await {
        Ok(_) => {
            let mut tx = store.begin().await?;
            audit::append(&mut tx, store.backend, Event { actor: &Actor::User(user.id.clone()), case_id: None, entity: "draft", entity_id: draft_id.to_string(), action: "pre_approved", detail: json!({"level": pa.level, "set_on": pa.set_on.to_string(), "policy": "reminders.toml"}) }).await?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(draft = draft_id, error = %e, "pre-approval not applied; the draft waits for a person");
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ClientSchedule;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn inv(n: &str, client: &str, due: &str, done: &[&str]) -> DueInvoice {
        DueInvoice { number: n.into(), client_id: client.into(), due_date: d(due), done: done.iter().map(|s| s.to_string()).collect(), blocked: None }
    }

    fn current(p: &[ClientPlan]) -> Vec<(String, String, StepOutcome)> {
        p.iter().flat_map(|c| c.steps.iter().filter(|s| s.outcome != StepOutcome::Skipped).map(|s| (s.invoice.clone(), s.level.clone(), s.outcome))).collect()
    }

    #[test]
    fn levels_by_day_across_month_ends() {
        let r = Policy::embedded().reminders;
        // (due date, today, expected current level or none)
        for (due, today, want) in [
            ("2026-03-03", "2026-02-27", None),                 // J-4: nothing yet
            ("2026-03-03", "2026-02-28", Some("pre_due")),      // J-3 across February's end
            ("2026-03-03", "2026-03-03", None),                 // due day: pre-due stale, first not yet
            ("2026-01-30", "2026-02-02", Some("first")),        // J+3 across January's end
            ("2026-12-29", "2027-01-08", Some("second")),       // J+10 across the year end
            ("2026-02-28", "2026-03-20", Some("call")),         // J+20
            ("2026-02-28", "2026-03-30", Some("manual")),       // J+30
            ("2024-02-28", "2024-03-01", None),                 // leap year: J+2
        ] {
            let p = plan(&r, &[inv("F1", "C1", due, &[])], d(today));
            let got = current(&p).first().map(|c| c.1.clone());
            assert_eq!(got.as_deref(), want, "due {due} today {today}");
        }
    }

    #[test]
    fn catch_up_sends_only_the_current_level_and_skips_the_rest() {
        let r = Policy::embedded().reminders;
        // Down for three weeks: the invoice is at J+22.
        let p = plan(&r, &[inv("F1", "C1", "2026-03-01", &[])], d("2026-03-23"));
        assert_eq!(current(&p), vec![("F1".into(), "call".into(), StepOutcome::Task)]);
        let skipped: Vec<&str> = p[0].steps.iter().filter(|s| s.outcome == StepOutcome::Skipped).map(|s| s.level.as_str()).collect();
        assert_eq!(skipped, vec!["pre_due", "first", "second"]);
        // Done levels are not planned again.
        let p = plan(&r, &[inv("F1", "C1", "2026-03-01", &["pre_due", "first", "second", "call"])], d("2026-03-23"));
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn grouping_overrides_and_blocks() {
        let mut r = Policy::embedded().reminders;
        r.clients.push(ClientSchedule { id: "LATE".into(), min_day: Some(10), manual: false });
        r.clients.push(ClientSchedule { id: "HAND".into(), min_day: None, manual: true });
        let mut blocked = inv("F4", "C1", "2026-03-01", &[]);
        blocked.blocked = Some("dispute (case 3)".into());
        let today = d("2026-03-05");
        let p = plan(&r, &[inv("F1", "C1", "2026-03-01", &[]), inv("F2", "C1", "2026-03-02", &[]), inv("F3", "C1", "2026-03-08", &[]), blocked, inv("F5", "LATE", "2026-03-01", &[]), inv("F6", "HAND", "2026-03-01", &[])], today);
        let c1 = p.iter().find(|c| c.client_id == "C1").unwrap();
        // F1 (J+4) and F2 (J+3) at first, F3 (J-3) pre-due: all in C1's one draft.
        let drafted: Vec<&str> = c1.steps.iter().filter(|s| s.outcome == StepOutcome::Draft).map(|s| s.invoice.as_str()).collect();
        assert_eq!(drafted, vec!["F1", "F2", "F3"]);
        assert_eq!(c1.blocked, vec![("F4".to_string(), "dispute (case 3)".to_string())]);
        // LATE: nothing before J+10, and the skipped first level never comes back.
        let late = p.iter().find(|c| c.client_id == "LATE").unwrap();
        assert!(late.steps.iter().all(|s| s.outcome == StepOutcome::Skipped), "{late:?}");
        assert!(late.steps.iter().any(|s| s.level == "first" && s.why.contains("client override")), "{late:?}");
        // HAND: a task instead of a draft.
        let hand = p.iter().find(|c| c.client_id == "HAND").unwrap();
        assert!(hand.steps.iter().any(|s| s.outcome == StepOutcome::ByHand));
    }

    #[test]
    fn reminder_text_states_the_computed_charges() {
        let w = ReminderWriter::load(None).unwrap();
        let lp = Policy::embedded().late_payment;
        let today = d("2026-03-02");
        let line = |n: &str, due: &str, cents| ReminderLine { number: n.into(), issue_date: "2026-01-01".into(), due_date: d(due), due: Money(cents), currency: "EUR".into(), charges: lp.charges("C1", Money(cents), d(due), today) };
        let lines = vec![line("FA-1", "2026-01-31", 1_000_000), line("FA-2", "2026-03-05", 50_000)];
        let company = Company::default();
        let (subject, body, template) = w.write(Language::Fr, "first", &lines, "12.15 %", &company).unwrap();
        assert_eq!(template, "reminder.v1.fr");
        assert!(subject.starts_with("Relance — factures FA-1, FA-2"), "{subject}");
        // 99.86 EUR of penalties (hand-worked in late_payment) and one indemnity.
        let ten_k = Money(1_000_000).fr();
        let want_first = format!("FA-1 du 01/01/2026, échue le 31/01/2026 (30 jours de retard) : {ten_k} EUR");
        for want in [want_first.as_str(), "à ce jour 99,86 EUR", "(40,00 EUR)", "FA-2 du 01/01/2026 : 500,00 EUR, échéance le 05/03/2026", "L441-10"] {
            assert!(body.contains(want), "missing {want:?} in:\n{body}");
        }
        let (subject, body, _) = w.write(Language::En, "pre_due", &lines[1..], "12.15 %", &company).unwrap();
        assert!(subject.contains("coming due") && body.contains("friendly reminder") && !body.contains("L441-10"), "{subject}\n{body}");
    }
}
