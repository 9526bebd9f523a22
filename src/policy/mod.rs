//! policy: loads `policies/*.toml` (routing, approval, priority, statuses) and
//! answers the questions of the decide stage. Files in the configured policies
//! folder override the defaults compiled into the binary, file by file.

use crate::domain::{Category, Money, Role, Status};
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
    #[serde(default, rename = "transition")]
    pub transitions: Vec<Transition>,
}

/// Every policy the flow reads.
#[derive(Debug, Clone)]
pub struct Policy {
    pub routing: Routing,
    pub priority: Priority,
    pub statuses: Statuses,
    /// The classifier's phrase rules (TOML text, compiled by `llm::rules`).
    pub classifier_toml: String,
}

const EMBEDDED: &[(&str, &str)] = &[
    ("routing.toml", include_str!("../../policies/routing.toml")),
    ("priority.toml", include_str!("../../policies/priority.toml")),
    ("statuses.toml", include_str!("../../policies/statuses.toml")),
    ("classifier.toml", include_str!("../../policies/classifier.toml")),
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
        Ok(Policy {
            routing: parse("routing.toml", &text_of(dir, "routing.toml")?)?,
            priority: parse("priority.toml", &text_of(dir, "priority.toml")?)?,
            statuses: parse("statuses.toml", &text_of(dir, "statuses.toml")?)?,
            classifier_toml: text_of(dir, "classifier.toml")?,
        })
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
