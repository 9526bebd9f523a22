//! decide: pure policy. From the link, the classification and a snapshot of
//! the client's open cases, it says what happens: open or update a case, move
//! its status, assign the owner, compute the priority, record a promise or a
//! payment notice, create tasks, and which drafts to write. Never calls the
//! LLM and never does I/O; client text cannot reach it except through the
//! category and facts (invariant 3).

use crate::domain::{Category, InvoiceNumber, Money, Role, Status};
use crate::flow::classify::Classification;
use crate::flow::link::Link;
use crate::policy::Policy;
use chrono::NaiveDate;
use serde::Serialize;

/// A user who can own work.
#[derive(Debug, Clone)]
pub struct Staff {
    pub id: String,
    pub role: Role,
    /// Open cases and tasks held now (for load balancing).
    pub load: i64,
}

/// The client, as decide needs it.
#[derive(Debug, Clone)]
pub struct ClientFacts {
    pub id: String,
    pub account_owner: Option<String>,
    pub strategic: bool,
}

/// A linked invoice, as decide needs it.
#[derive(Debug, Clone)]
pub struct InvoiceFacts {
    pub number: InvoiceNumber,
    pub amount: Money,
    pub due_date: NaiveDate,
}

/// A case of the client that is not resolved.
#[derive(Debug, Clone)]
pub struct OpenCase {
    pub id: i64,
    pub kind: CaseKind,
    pub status: Status,
    pub owner_id: Option<String>,
    pub invoices: Vec<InvoiceNumber>,
    /// Not used to decide: the drafts of a message attached to the case
    /// show them, and reading them here spares reading the case again.
    pub priority: i64,
    pub priority_reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    Dispute,
    Request,
}

impl CaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseKind::Dispute => "dispute",
            CaseKind::Request => "request",
        }
    }
}

/// Everything decide reads.
#[derive(Debug, Clone)]
pub struct DecideInput<'a> {
    pub link: &'a Link,
    pub classification: &'a Classification,
    pub client: Option<&'a ClientFacts>,
    pub invoices: &'a [InvoiceFacts],
    pub open_cases: &'a [OpenCase],
    /// The case of the stored message this one answers, if any.
    pub thread_case: Option<i64>,
    pub staff: &'a [Staff],
    /// Header signals of bulk or list mail (newsletters, mailing lists).
    pub bulk: bool,
    pub today: NaiveDate,
}

/// What becomes of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Opened or updated a case.
    Case,
    /// Created a task, no case.
    Task,
    /// Kept as a note only (out of office).
    Note,
    /// Business mail that could not be tied to a client: waits for a person.
    Unlinked,
    /// Non-business mail (newsletter, list, spam, personal): no case, no task.
    Ignored,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Case => "case",
            Disposition::Task => "task",
            Disposition::Note => "note",
            Disposition::Unlinked => "unlinked",
            Disposition::Ignored => "ignored",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum CaseAction {
    Open { kind: CaseKind, category: Category, status: Status, priority: i64, priority_reason: String, at_stake: Money, disputed: Option<Money> },
    Update { case_id: i64, to_status: Option<Status>, add_invoices: Vec<InvoiceNumber> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    CheckPromise,
    CheckPayment,
    Review,
    LinkMessage,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::CheckPromise => "check_promise",
            TaskKind::CheckPayment => "check_payment",
            TaskKind::Review => "review",
            TaskKind::LinkMessage => "link_message",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskPlan {
    pub kind: TaskKind,
    pub owner_id: Option<String>,
    pub due_date: Option<NaiveDate>,
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DraftKind {
    /// Reply to the client (needs an approval to leave).
    Reply,
    /// Internal call brief for the owner.
    Brief,
}

/// The decision, applied by the pipeline in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub disposition: Disposition,
    pub case: Option<CaseAction>,
    pub owner_id: Option<String>,
    pub owner_role: Option<Role>,
    pub tasks: Vec<TaskPlan>,
    /// Promise to pay: the invoices and the date, recorded on the invoices.
    pub promise: Option<(Vec<InvoiceNumber>, Option<NaiveDate>)>,
    /// Payment notice: the invoices, recorded on the invoices.
    pub payment_notice: Vec<InvoiceNumber>,
    pub drafts: Vec<DraftKind>,
    /// Why, in short lowercase phrases (shown in `cases show`, kept in audit).
    pub reasons: Vec<String>,
}

impl Decision {
    fn new(disposition: Disposition) -> Self {
        Decision { disposition, case: None, owner_id: None, owner_role: None, tasks: vec![], promise: None, payment_notice: vec![], drafts: vec![], reasons: vec![] }
    }
}

/// The user who owns work of `role` for this client.
pub fn assign(policy: &Policy, role: Role, client: Option<&ClientFacts>, staff: &[Staff]) -> Option<(String, Role)> {
    if role == Role::Sales {
        if let Some(owner) = client.and_then(|c| c.account_owner.as_ref()) {
            if let Some(s) = staff.iter().find(|s| &s.id == owner) {
                return Some((s.id.clone(), s.role));
            }
        }
    }
    let least_loaded = |r: Role| staff.iter().filter(|s| s.role == r).min_by(|a, b| a.load.cmp(&b.load).then_with(|| a.id.cmp(&b.id)));
    least_loaded(role)
        .or_else(|| least_loaded(policy.routing.fallback_role))
        .map(|s| (s.id.clone(), s.role))
}

/// The owner of new work of `cat`: the client's pinned owner, a manager when
/// a dispute crosses the escalation rules, else [`assign`] by role.
pub fn route_owner(policy: &Policy, cat: Category, role: Role, client: Option<&ClientFacts>, at_stake: Money, staff: &[Staff], reasons: &mut Vec<String>) -> Option<(String, Role)> {
    if let Some(c) = client {
        if let Some(pin) = policy.routing.clients.iter().find(|p| p.id == c.id) {
            if let Some(s) = staff.iter().find(|s| s.id == pin.owner) {
                reasons.push(format!("client {} is pinned to {} by routing policy", c.id, s.id));
                return Some((s.id.clone(), s.role));
            }
            reasons.push(format!("pinned owner {} of client {} is not a user, routing by category", pin.owner, c.id));
        }
        if cat.is_dispute() {
            let esc = &policy.routing.escalation;
            let over = esc.amount_threshold_eur > 0 && at_stake.cents() >= esc.amount_threshold_eur * 100;
            let strategic = esc.strategic_to_manager && c.strategic;
            if over || strategic {
                if let Some(m) = assign(policy, Role::Manager, Some(c), staff) {
                    reasons.push(if over { format!("amount at stake {at_stake} at or above {} EUR: escalated to a manager", esc.amount_threshold_eur) } else { "strategic client: escalated to a manager".into() });
                    return Some(m);
                }
            }
        }
    }
    assign(policy, role, client, staff)
}

/// Decides what a message leads to.
pub fn decide(policy: &Policy, input: &DecideInput<'_>) -> Decision {
    let cat = input.classification.category;
    let linked_invoices: Vec<InvoiceNumber> = input.link.invoices.clone();

    // An open case this message continues: the thread's case first, then the
    // client's open case sharing an invoice.
    let continued = input
        .thread_case
        .and_then(|id| input.open_cases.iter().find(|c| c.id == id))
        .or_else(|| input.open_cases.iter().find(|c| c.invoices.iter().any(|i| linked_invoices.contains(i))));

    if cat == Category::OutOfOffice {
        let mut d = Decision::new(Disposition::Note);
        d.reasons.push("automatic absence reply: kept as a note".into());
        return d;
    }

    if input.client.is_none() {
        // Non-business mail from unknown senders (newsletters, lists, spam,
        // personal mail) is not work; business-looking mail waits for a person.
        if input.bulk || (cat == Category::Other && linked_invoices.is_empty()) {
            let mut d = Decision::new(Disposition::Ignored);
            d.reasons.push(if input.bulk { "bulk or list mail from an unknown sender" } else { "not about our invoices and sender unknown" }.into());
            return d;
        }
        let mut d = Decision::new(Disposition::Unlinked);
        d.reasons.push("no client found: waits in the unlinked queue".into());
        if let Some((id, role)) = assign(policy, Role::Accountant, None, input.staff) {
            d.owner_id = Some(id.clone());
            d.owner_role = Some(role);
            d.tasks.push(TaskPlan { kind: TaskKind::LinkMessage, owner_id: Some(id), due_date: None, note: "link this message to a client or invoice".into() });
        }
        return d;
    }

    if input.bulk && linked_invoices.is_empty() && cat == Category::Other {
        let mut d = Decision::new(Disposition::Ignored);
        d.reasons.push("bulk or list mail (newsletter) from a client domain".into());
        return d;
    }

    let client = input.client;
    let at_stake: Money = Money(input.invoices.iter().map(|i| i.amount.cents()).sum());
    let days_past_due = input.invoices.iter().map(|i| (input.today - i.due_date).num_days()).max().unwrap_or(0);

    // A message on a case that is still open continues it, whatever its category,
    // and keeps its owner; a client reply moves a waiting case back.
    if let Some(case) = continued {
        let mut d = Decision::new(Disposition::Case);
        let to_status = policy.statuses.on_client_reply.from.contains(&case.status).then_some(policy.statuses.on_client_reply.to);
        let add: Vec<InvoiceNumber> = linked_invoices.iter().filter(|i| !case.invoices.contains(i)).cloned().collect();
        d.case = Some(CaseAction::Update { case_id: case.id, to_status, add_invoices: add });
        d.owner_id = case.owner_id.clone();
        d.owner_role = case.owner_id.as_ref().and_then(|o| input.staff.iter().find(|s| &s.id == o)).map(|s| s.role);
        d.reasons.push(format!("continues case {}", case.id));
        if let Some(s) = to_status {
            d.reasons.push(format!("client replied: case moves to {s}"));
        }
        match cat {
            Category::PromiseToPay => d.promise = Some((linked_invoices.clone(), input.classification.facts.promised_date)),
            Category::PaymentNotice => d.payment_notice = linked_invoices.clone(),
            _ => {}
        }
        d.drafts = vec![DraftKind::Reply, DraftKind::Brief];
        return d;
    }

    let Some(role) = policy.route(cat) else {
        let mut d = Decision::new(Disposition::Note);
        d.reasons.push(format!("category {cat} needs no follow-up by policy"));
        return d;
    };
    let mut d = Decision::new(Disposition::Task);
    let owner = route_owner(policy, cat, role, client, at_stake, input.staff, &mut d.reasons);
    if let Some((id, r)) = &owner {
        d.owner_id = Some(id.clone());
        d.owner_role = Some(*r);
        d.reasons.push(format!("routed to {r} {id} for {cat}"));
    } else {
        d.reasons.push(format!("no user can own {cat}: nobody with role {role} or {}", policy.routing.fallback_role));
    }
    let owner_id = owner.map(|(id, _)| id);
    let strategic = client.map(|c| c.strategic).unwrap_or(false);

    match cat {
        c if c.is_dispute() => {
            let (priority, priority_reason) = policy.priority_of(&crate::policy::PriorityFacts {
                at_stake,
                days_past_due,
                strategic,
                dispute: true,
                category: Some(cat),
                client_id: client.map(|c| c.id.as_str()),
                age_days: 0,
            });
            d.disposition = Disposition::Case;
            d.case = Some(CaseAction::Open {
                kind: CaseKind::Dispute,
                category: cat,
                status: policy.statuses.initial,
                priority,
                priority_reason,
                at_stake,
                disputed: input.classification.facts.disputed_amount,
            });
            d.drafts = vec![DraftKind::Reply, DraftKind::Brief];
            d.reasons.push("dispute: case opened, reminders paused on its invoices".into());
        }
        Category::InvoiceRequest => {
            let (priority, priority_reason) = policy.priority(at_stake, days_past_due, strategic, false);
            d.disposition = Disposition::Case;
            d.case = Some(CaseAction::Open { kind: CaseKind::Request, category: cat, status: policy.statuses.initial, priority, priority_reason, at_stake, disputed: None });
            d.drafts = vec![DraftKind::Reply];
            d.reasons.push("request for documents: request case opened".into());
        }
        Category::PromiseToPay => {
            let date = input.classification.facts.promised_date;
            d.promise = Some((linked_invoices.clone(), date));
            d.tasks.push(TaskPlan {
                kind: TaskKind::CheckPromise,
                owner_id: owner_id.clone(),
                due_date: date,
                note: match date {
                    Some(dt) => format!("check payment promised for {dt}"),
                    None => "check the promised payment (no date stated)".into(),
                },
            });
            d.drafts = vec![DraftKind::Reply];
            d.reasons.push("promise to pay: recorded on the invoices, check task created".into());
        }
        Category::PaymentNotice => {
            d.payment_notice = linked_invoices.clone();
            d.tasks.push(TaskPlan { kind: TaskKind::CheckPayment, owner_id: owner_id.clone(), due_date: Some(input.today), note: "check the payment the client announced against the bank statement".into() });
            d.drafts = vec![DraftKind::Reply];
            d.reasons.push("payment notice: recorded on the invoices, check task created".into());
        }
        _ => {
            d.tasks.push(TaskPlan { kind: TaskKind::Review, owner_id: owner_id.clone(), due_date: None, note: "read and decide what this message needs".into() });
            d.reasons.push("not a dispute: review task created".into());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::classify::Facts;
    use crate::flow::link::LinkMethod;

    fn inv(n: &str) -> InvoiceNumber {
        InvoiceNumber::parse(n).unwrap()
    }
    fn staff() -> Vec<Staff> {
        vec![
            Staff { id: "U1".into(), role: Role::Accountant, load: 3 },
            Staff { id: "U2".into(), role: Role::Accountant, load: 1 },
            Staff { id: "U3".into(), role: Role::Sales, load: 9 },
            Staff { id: "U4".into(), role: Role::Sales, load: 0 },
            Staff { id: "U5".into(), role: Role::Technical, load: 0 },
            Staff { id: "U7".into(), role: Role::Manager, load: 0 },
        ]
    }
    fn link(invoices: &[&str], client: Option<&str>) -> Link {
        Link { client_id: client.map(Into::into), invoices: invoices.iter().map(|i| inv(i)).collect(), method: LinkMethod::InvoiceNumber, confidence: 0.9, notes: vec![] }
    }
    fn class(c: Category) -> Classification {
        Classification { category: c, confidence: 0.9, reasons: vec![], facts: Facts::default(), source: "rules".into(), model_usage: None }
    }
    fn run(cat: Category, client: Option<&ClientFacts>, cases: &[OpenCase], bulk: bool) -> Decision {
        let p = Policy::embedded();
        let l = link(&["F-1"], client.map(|c| c.id.as_str()));
        let c = class(cat);
        let invs = vec![InvoiceFacts { number: inv("F-1"), amount: Money(500_000), due_date: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap() }];
        let st = staff();
        decide(&p, &DecideInput { link: &l, classification: &c, client, invoices: &invs, open_cases: cases, thread_case: None, staff: &st, bulk, today: NaiveDate::from_ymd_opt(2026, 3, 21).unwrap() })
    }
    fn client() -> ClientFacts {
        ClientFacts { id: "C1".into(), account_owner: Some("U3".into()), strategic: true }
    }

    #[test]
    fn routes_each_category_per_the_default_table() {
        let c = client();
        for (cat, owner, disp) in [
            (Category::Price, Some("U3"), Disposition::Case),
            (Category::Quantity, Some("U3"), Disposition::Case),
            (Category::NonConformity, Some("U5"), Disposition::Case),
            (Category::ProjectDelay, Some("U5"), Disposition::Case),
            (Category::AdminError, Some("U2"), Disposition::Case),
            (Category::InvoiceRequest, Some("U2"), Disposition::Case),
            (Category::PromiseToPay, Some("U2"), Disposition::Task),
            (Category::PaymentNotice, Some("U2"), Disposition::Task),
            (Category::Other, Some("U2"), Disposition::Task),
            (Category::OutOfOffice, None, Disposition::Note),
        ] {
            let d = run(cat, Some(&c), &[], false);
            assert_eq!(d.owner_id.as_deref(), owner, "{cat}");
            assert_eq!(d.disposition, disp, "{cat}");
        }
    }

    #[test]
    fn a_dispute_opens_a_prioritised_case_with_reply_and_brief() {
        let c = client();
        let d = run(Category::Price, Some(&c), &[], false);
        match d.case {
            Some(CaseAction::Open { status, priority, ref priority_reason, at_stake, .. }) => {
                assert_eq!(status, Status::Open);
                assert_eq!(at_stake, Money(500_000));
                assert_eq!(priority, 10 + 10 + 20 + 10, "{priority_reason}");
            }
            ref other => panic!("{other:?}"),
        }
        assert_eq!(d.drafts, vec![DraftKind::Reply, DraftKind::Brief]);
    }

    #[test]
    fn a_client_reply_on_a_waiting_case_moves_it_back_to_analysis() {
        let c = client();
        let case = OpenCase { id: 7, kind: CaseKind::Dispute, status: Status::WaitingClient, owner_id: Some("U5".into()), invoices: vec![inv("F-1")], priority: 0, priority_reason: String::new() };
        let d = run(Category::Other, Some(&c), std::slice::from_ref(&case), false);
        assert_eq!(d.case, Some(CaseAction::Update { case_id: 7, to_status: Some(Status::InAnalysis), add_invoices: vec![] }));
        assert_eq!(d.owner_id.as_deref(), Some("U5"));
        let open = OpenCase { status: Status::Open, ..case };
        let d = run(Category::Price, Some(&c), &[open], false);
        assert_eq!(d.case, Some(CaseAction::Update { case_id: 7, to_status: None, add_invoices: vec![] }));
    }

    #[test]
    fn promises_and_payment_notices_are_recorded_not_disputes() {
        let c = client();
        let d = run(Category::PromiseToPay, Some(&c), &[], false);
        assert!(d.case.is_none());
        assert_eq!(d.promise.as_ref().map(|p| p.0.len()), Some(1));
        assert_eq!(d.tasks[0].kind, TaskKind::CheckPromise);
        let d = run(Category::PaymentNotice, Some(&c), &[], false);
        assert_eq!(d.payment_notice, vec![inv("F-1")]);
        assert_eq!(d.tasks[0].kind, TaskKind::CheckPayment);
    }

    #[test]
    fn unknown_senders_are_unlinked_or_ignored_never_a_case() {
        assert_eq!(run(Category::Price, None, &[], false).disposition, Disposition::Unlinked);
        assert_eq!(run(Category::Other, None, &[], true).disposition, Disposition::Ignored);
        let c = client();
        let p = Policy::embedded();
        let l = link(&[], Some("C1"));
        let cl = class(Category::Other);
        let st = staff();
        let d = decide(&p, &DecideInput { link: &l, classification: &cl, client: Some(&c), invoices: &[], open_cases: &[], thread_case: None, staff: &st, bulk: true, today: NaiveDate::from_ymd_opt(2026, 3, 21).unwrap() });
        assert_eq!(d.disposition, Disposition::Ignored);
        assert!(d.case.is_none() && d.tasks.is_empty());
    }

    #[test]
    fn sales_without_account_owner_goes_to_least_loaded_and_falls_back() {
        let p = Policy::embedded();
        let c = ClientFacts { id: "C2".into(), account_owner: None, strategic: false };
        assert_eq!(assign(&p, Role::Sales, Some(&c), &staff()).unwrap().0, "U4");
        let only_manager = vec![Staff { id: "M".into(), role: Role::Manager, load: 0 }];
        assert_eq!(assign(&p, Role::Technical, Some(&c), &only_manager).unwrap(), ("M".into(), Role::Manager));
        assert!(assign(&p, Role::Technical, Some(&c), &[]).is_none());
    }

    #[test]
    #[allow(clippy::inconsistent_digit_grouping)] // amounts in cents: 500_00 is 500.00 EUR
    fn routing_table_with_overrides() {
        let mut p = Policy::embedded();
        p.routing.escalation.amount_threshold_eur = 10_000;
        p.routing.escalation.strategic_to_manager = true;
        p.routing.clients.push(crate::policy::ClientOwner { id: "PIN".into(), owner: "U2".into() });
        let plain = ClientFacts { id: "C2".into(), account_owner: Some("U3".into()), strategic: false };
        let strategic = ClientFacts { strategic: true, ..plain.clone() };
        let pinned = ClientFacts { id: "PIN".into(), ..plain.clone() };
        let mut why = vec![];
        // (category, routed role, client, amount in cents, expected owner)
        for (cat, role, client, cents, want) in [
            (Category::Price, Role::Sales, &plain, 500_00, "U3"),             // account owner
            (Category::Price, Role::Sales, &plain, 10_000_00, "U7"),          // at the threshold: manager
            (Category::NonConformity, Role::Technical, &strategic, 1_00, "U7"), // strategic dispute: manager
            (Category::PromiseToPay, Role::Accountant, &strategic, 50_000_00, "U2"), // not a dispute: no escalation
            (Category::Price, Role::Sales, &pinned, 50_000_00, "U2"),         // pinned client wins
        ] {
            let got = route_owner(&p, cat, role, Some(client), Money(cents), &staff(), &mut why).unwrap().0;
            assert_eq!(got, want, "{cat} {} {cents}", client.id);
        }
        assert!(why.iter().any(|w| w.contains("escalated to a manager")), "{why:?}");
        // Off by default: the embedded policy routes by category only.
        let p = Policy::embedded();
        assert_eq!(route_owner(&p, Category::Price, Role::Sales, Some(&strategic), Money(99_999_999), &staff(), &mut why).unwrap().0, "U3");
    }
}
