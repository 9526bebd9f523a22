//! policy: loads `policies/*.toml` (routing, approval, priority, statuses and
//! their service levels, reminders, late-payment terms) and answers the
//! questions of the decide, workflow and remind stages. Files in the
//! configured policies folder override the defaults compiled into the
//! binary, file by file.

pub mod calendar;
pub mod late_payment;

use crate::domain::{Category, Money, Role, Status};
use chrono::NaiveDate;
use late_payment::LatePayment;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("invalid policy {file}: {reason}")]
    Invalid { file: String, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Routing {
    pub fallback_role: Role,
    pub categories: BTreeMap<Category, Role>,
    pub approval: Approval,
    #[serde(default)]
    pub escalation: Escalation,
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientOwner>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Escalation {
    /// A dispute at or above this amount goes to a manager (0: off).
    #[serde(default)]
    pub amount_threshold_eur: i64,
    #[serde(default)]
    pub strategic_to_manager: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClientOwner {
    pub id: String,
    pub owner: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Approval {
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Priority {
    pub points_per_thousand: i64,
    pub amount_cap: i64,
    pub days_per_point: i64,
    pub overdue_cap: i64,
    pub strategic: i64,
    pub dispute: i64,
    #[serde(default)]
    pub age_days_per_point: i64,
    #[serde(default)]
    pub age_cap: i64,
    #[serde(default)]
    pub contract_risk: ContractRisk,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContractRisk {
    #[serde(default)]
    pub categories: BTreeMap<Category, i64>,
    #[serde(default)]
    pub clients: BTreeMap<String, i64>,
}

/// What a case's priority is computed from.
#[derive(Debug, Clone, Copy)]
pub struct PriorityFacts<'a> {
    pub at_stake: Money,
    pub days_past_due: i64,
    pub strategic: bool,
    pub dispute: bool,
    pub category: Option<Category>,
    pub client_id: Option<&'a str>,
    /// Days since the case was opened.
    pub age_days: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OnClientReply {
    pub from: Vec<Status>,
    pub to: Status,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Transition {
    pub from: Status,
    pub to: Status,
    pub roles: Vec<Role>,
    #[serde(default)]
    pub requires: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Statuses {
    pub initial: Status,
    pub on_client_reply: OnClientReply,
    /// Working days allowed in each status.
    #[serde(default)]
    pub sla: BTreeMap<Status, u32>,
    #[serde(default)]
    pub extra_holidays: Vec<NaiveDate>,
    #[serde(default, rename = "transition")]
    pub transitions: Vec<Transition>,
}

/// What a reminder level does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderAction {
    Email,
    CallTask,
    ManualTask,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReminderLevel {
    pub name: String,
    /// Days from the due date (negative: before).
    pub day: i64,
    pub action: ReminderAction,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pauses {
    pub promise_grace_days: i64,
    pub payment_notice_grace_days: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PreApproval {
    pub level: String,
    pub by: String,
    pub set_on: NaiveDate,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientSchedule {
    pub id: String,
    /// Never remind before this day from the due date.
    #[serde(default)]
    pub min_day: Option<i64>,
    /// Handled by hand: tasks instead of drafts.
    #[serde(default)]
    pub manual: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Reminders {
    pub owner_role: Role,
    #[serde(rename = "level")]
    pub levels: Vec<ReminderLevel>,
    pub pauses: Pauses,
    #[serde(default)]
    pub pre_approval: Option<PreApproval>,
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientSchedule>,
}

/// Every policy the flow reads.
#[derive(Debug, Clone)]
pub struct Policy {
    pub routing: Routing,
    pub priority: Priority,
    pub statuses: Statuses,
    pub reminders: Reminders,
    pub late_payment: LatePayment,
    /// The classifier's phrase rules (TOML text, compiled by `llm::rules`).
    pub classifier_toml: String,
}

const EMBEDDED: &[(&str, &str)] = &[
    ("routing.toml", include_str!("../../policies/routing.toml")),
    ("priority.toml", include_str!("../../policies/priority.toml")),
    ("statuses.toml", include_str!("../../policies/statuses.toml")),
    ("classifier.toml", include_str!("../../policies/classifier.toml")),
    ("reminders.toml", include_str!("../../policies/reminders.toml")),
    ("late_payment.toml", include_str!("../../policies/late_payment.toml")),
];

fn text_of(dir: Option<&Path>, name: &str) -> Result<String, PolicyError> {
    if let Some(dir) = dir {
        let p = dir.join(name);
        if p.exists() {
            return std::fs::read_to_string(&p).map_err(|source| PolicyError::Read { file: p.display().to_string(), source });
        }
    }
    Ok(EMBEDDED.iter().find(|(n, _)| *n == name).map(|(_, t)| t.to_string()).unwrap_or_default())
}

fn parse<T: for<'de> Deserialize<'de>>(name: &str, text: &str) -> Result<T, PolicyError> {
    toml::from_str(text).map_err(|e| PolicyError::Invalid { file: name.to_string(), reason: e.to_string() })
}

impl Policy {
    /// Loads from `dir` (files present there override the embedded defaults).
    pub fn load(dir: Option<&Path>) -> Result<Policy, PolicyError> {
        Policy {
            routing: parse("routing.toml", &text_of(dir, "routing.toml")?)?,
            priority: parse("priority.toml", &text_of(dir, "priority.toml")?)?,
            statuses: parse("statuses.toml", &text_of(dir, "statuses.toml")?)?,
            reminders: parse("reminders.toml", &text_of(dir, "reminders.toml")?)?,
            late_payment: parse("late_payment.toml", &text_of(dir, "late_payment.toml")?)?,
            classifier_toml: text_of(dir, "classifier.toml")?,
        }
        .checked()
    }

    /// Cross-file checks a TOML parser cannot make.
    fn checked(self) -> Result<Policy, PolicyError> {
        let bad = |file: &str, reason: String| Err(PolicyError::Invalid { file: file.into(), reason });
        if self.reminders.levels.is_empty() {
            return bad("reminders.toml", "no [[level]]".into());
        }
        let mut days: Vec<i64> = self.reminders.levels.iter().map(|l| l.day).collect();
        days.dedup();
        if days.windows(2).any(|w| w[0] >= w[1]) {
            return bad("reminders.toml", "levels must be listed by increasing day, each day once".into());
        }
        if self.late_payment.ecb_rates.is_empty() {
            return bad("late_payment.toml", "ecb_rates is empty".into());
        }
        for t in &self.statuses.transitions {
            if let Some(r) = t.requires.iter().find(|r| !matches!(r.as_str(), "reason" | "amount")) {
                return bad("statuses.toml", format!("transition {} -> {} requires unknown {r:?} (reason, amount)", t.from, t.to));
            }
        }
        Ok(self)
    }

    /// Working days and holidays as the service levels count them.
    pub fn calendar(&self) -> calendar::Calendar {
        calendar::Calendar { extra_holidays: self.statuses.extra_holidays.clone() }
    }

    /// The deadline of a case entering `status` on `day`, if that status has one.
    pub fn sla_deadline(&self, status: Status, day: NaiveDate) -> Option<NaiveDate> {
        self.statuses.sla.get(&status).map(|n| self.calendar().add_working_days(day, *n))
    }

    /// The embedded defaults.
    pub fn embedded() -> Policy {
        Policy::load(None).expect("embedded policies are valid (tested)")
    }

    /// The role that owns the follow-up of a category, if any.
    pub fn route(&self, category: Category) -> Option<Role> {
        self.routing.categories.get(&category).copied()
    }

    pub fn may_approve(&self, role: Role) -> bool {
        self.routing.approval.roles.contains(&role)
    }

    /// The priority score and its reason.
    pub fn priority(&self, at_stake: Money, days_past_due: i64, strategic: bool, dispute: bool) -> (i64, String) {
        self.priority_of(&PriorityFacts { at_stake, days_past_due, strategic, dispute, category: None, client_id: None, age_days: 0 })
    }

    /// The priority score of a case and its reason, from every factor.
    pub fn priority_of(&self, f: &PriorityFacts<'_>) -> (i64, String) {
        let (at_stake, days_past_due, strategic, dispute) = (f.at_stake, f.days_past_due, f.strategic, f.dispute);
        let p = &self.priority;
        let mut parts = Vec::new();
        let amount = (at_stake.cents().max(0) / 100_000 * p.points_per_thousand).min(p.amount_cap);
        parts.push(format!("amount {} (+{amount})", at_stake));
        let overdue = if days_past_due > 0 { (days_past_due / p.days_per_point.max(1)).min(p.overdue_cap) } else { 0 };
        if days_past_due > 0 {
            parts.push(format!("{days_past_due} days past due (+{overdue})"));
        }
        let mut score = amount + overdue;
        if strategic {
            score += p.strategic;
            parts.push(format!("strategic client (+{})", p.strategic));
        }
        if dispute {
            score += p.dispute;
            parts.push(format!("dispute (+{})", p.dispute));
        }
        let risk = f.category.and_then(|c| p.contract_risk.categories.get(&c)).copied().unwrap_or(0)
            + f.client_id.and_then(|c| p.contract_risk.clients.get(c)).copied().unwrap_or(0);
        if risk > 0 {
            score += risk;
            parts.push(format!("contract risk (+{risk})"));
        }
        if p.age_days_per_point > 0 && f.age_days >= p.age_days_per_point {
            let age = (f.age_days / p.age_days_per_point).min(p.age_cap);
            score += age;
            parts.push(format!("open {} days (+{age})", f.age_days));
        }
        (score, parts.join(", "))
    }

    /// Whether `role` may move a case from `from` to `to`, and what it needs.
    pub fn transition(&self, from: Status, to: Status) -> Option<&Transition> {
        self.statuses.transitions.iter().find(|t| t.from == from && t.to == to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_policies_load_and_route_like_format_md() {
        let p = Policy::embedded();
        assert_eq!(p.route(Category::Price), Some(Role::Sales));
        assert_eq!(p.route(Category::NonConformity), Some(Role::Technical));
        assert_eq!(p.route(Category::Other), Some(Role::Accountant));
        assert_eq!(p.route(Category::OutOfOffice), None);
        assert!(p.may_approve(Role::Accountant) && !p.may_approve(Role::Sales));
        assert_eq!(p.statuses.initial, Status::Open);
        assert!(!p.classifier_toml.is_empty());
    }

    #[test]
    fn priority_adds_up_with_reasons() {
        let p = Policy::embedded();
        let (s, why) = p.priority(Money(1_234_500), 10, true, true);
        assert_eq!(s, 24 + 5 + 20 + 10);
        assert!(why.contains("strategic client (+20)") && why.contains("10 days past due (+5)"), "{why}");
        assert_eq!(p.priority(Money(100), -3, false, false).0, 0);
    }

    #[test]
    fn a_file_in_the_folder_overrides_the_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("routing.toml"), "fallback_role = \"manager\"\n[categories]\nprice = \"manager\"\n[approval]\nroles = [\"manager\"]\n").unwrap();
        let p = Policy::load(Some(dir.path())).unwrap();
        assert_eq!(p.route(Category::Price), Some(Role::Manager));
        assert!(!p.may_approve(Role::Accountant));
        std::fs::write(dir.path().join("priority.toml"), "nonsense = [").unwrap();
        assert!(matches!(Policy::load(Some(dir.path())), Err(PolicyError::Invalid { .. })));
    }
}
