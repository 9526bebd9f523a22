//! config: settings in one place: defaults, then a TOML file, then
//! environment variables (`DISPUTE_DESK_*`). Secrets are never printed.

use crate::flow::pipeline::Company;
use crate::llm::openai::{LlmConfig, Structured};
use crate::mail::imap::MailboxConfig;
use crate::mail::smtp::{SmtpConfig, TlsMode};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid configuration {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("invalid environment variable {name}: {reason}")]
    Env { name: String, reason: String },
}

/// Every setting. See README "Configuration".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite database lives by default.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` (default: DATA_DIR/dispute-desk.db) or `postgres://…`.
    pub database_url: Option<String>,
    /// Folder of policy TOML files; missing files fall back to the defaults.
    pub policies_dir: Option<PathBuf>,
    /// Folder of prompt templates; missing files fall back to the defaults.
    pub prompts_dir: Option<PathBuf>,
    pub company: Company,
    pub smtp: SmtpConfig,
    /// Send attempts for transient SMTP errors before a row is `failed`.
    pub send_max_attempts: i64,
    /// Mailboxes `serve` watches (`[[mailbox]]` entries).
    pub mailbox: Vec<MailboxConfig>,
    /// Name of the mailbox whose Sent folder keeps what we send (default: the first).
    pub sent_mailbox: Option<String>,
    /// Seconds between outbox passes in `serve`.
    pub outbox_poll_secs: u64,
    /// The web desk (`dispute-desk web`).
    pub web: WebConfig,
    /// `[[webhook]]` endpoints (url, secret, events): see README "Webhooks".
    #[serde(rename = "webhook")]
    pub webhooks: Vec<crate::webhooks::WebhookConfig>,
    /// Several instances on one database: takeover time, daily reminder time.
    pub cluster: crate::cluster::ClusterConfig,
    /// The model: `provider = "rules"` (default, offline) or `"openai"`.
    pub llm: LlmConfig,
    /// Keep the process on one CPU: unset = only the flow's batch commands
    /// on SQLite with the rules (see `cpu`), `false` = never, `true` = always.
    pub one_cpu: Option<bool>,
}

/// Settings of the web desk (src/web).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Address to listen on.
    pub listen: String,
    /// Mark cookies `Secure` (set when the desk is served over HTTPS).
    pub secure_cookies: bool,
    /// How long a login lasts, in hours.
    pub session_hours: i64,
    /// Failed logins allowed per email and client address in the window.
    pub login_max_failures: i64,
    /// The window of the failed-login limit, in minutes.
    pub login_window_minutes: i64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { listen: "127.0.0.1:8080".into(), secure_cookies: false, session_hours: 12, login_max_failures: 5, login_window_minutes: 15 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            database_url: None,
            policies_dir: Path::new("policies").is_dir().then(|| PathBuf::from("policies")),
            prompts_dir: Path::new("prompts").is_dir().then(|| PathBuf::from("prompts")),
            company: Company::default(),
            smtp: SmtpConfig::default(),
            send_max_attempts: 5,
            mailbox: Vec::new(),
            sent_mailbox: None,
            outbox_poll_secs: 10,
            web: WebConfig::default(),
            webhooks: vec![],
            cluster: crate::cluster::ClusterConfig::default(),
            llm: LlmConfig::default(),
            one_cpu: None,
        }
    }
}

impl Config {
    /// The defaults with the data in `data_dir` and the `policies/` and `prompts/`
    /// of the checkout at `checkout`: what the tests and benches start from.
    pub fn in_checkout(data_dir: &Path, checkout: &Path) -> Config {
        Config { data_dir: data_dir.to_path_buf(), policies_dir: Some(checkout.join("policies")), prompts_dir: Some(checkout.join("prompts")), ..Config::default() }
    }

    /// Defaults, then `file` (or `dispute-desk.toml` if present), then env.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("DISPUTE_DESK_")).collect();
        let file = file.map(Path::to_path_buf).or_else(|| env.iter().find(|(k, _)| k == "DISPUTE_DESK_CONFIG").map(|(_, v)| PathBuf::from(v)));
        let file = file.or_else(|| Path::new("dispute-desk.toml").exists().then(|| PathBuf::from("dispute-desk.toml")));
        let mut cfg = match &file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.display().to_string(), source })?;
                toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: p.display().to_string(), reason: e.to_string() })?
            }
            None => Config::default(),
        };
        cfg.apply_env(&env)?;
        Ok(cfg)
    }

    fn apply_env(&mut self, env: &[(String, String)]) -> Result<(), ConfigError> {
        for (k, v) in env {
            let bad = |reason: &str| ConfigError::Env { name: k.clone(), reason: reason.to_string() };
            match k.as_str() {
                "DISPUTE_DESK_DATA_DIR" => self.data_dir = PathBuf::from(v),
                "DISPUTE_DESK_DATABASE_URL" => self.database_url = Some(v.clone()),
                "DISPUTE_DESK_TAKEOVER_SECS" => self.cluster.takeover_secs = v.parse().map_err(|_| bad("expected whole seconds"))?,
                "DISPUTE_DESK_REMIND_AT" => self.cluster.remind_at = v.clone(),
                "DISPUTE_DESK_POLICIES_DIR" => self.policies_dir = Some(PathBuf::from(v)),
                "DISPUTE_DESK_PROMPTS_DIR" => self.prompts_dir = Some(PathBuf::from(v)),
                "DISPUTE_DESK_COMPANY_NAME" => self.company.name = v.clone(),
                "DISPUTE_DESK_FROM" => self.company.from_address = v.clone(),
                "DISPUTE_DESK_SIGNER" => self.company.signer = v.clone(),
                "DISPUTE_DESK_SMTP_HOST" => self.smtp.host = v.clone(),
                "DISPUTE_DESK_SMTP_PORT" => self.smtp.port = v.parse().map_err(|_| bad("expected a port number"))?,
                "DISPUTE_DESK_SMTP_TLS" => {
                    self.smtp.tls = match v.as_str() {
                        "none" => TlsMode::None,
                        "starttls" => TlsMode::Starttls,
                        "tls" => TlsMode::Tls,
                        _ => return Err(bad("expected none, starttls or tls")),
                    }
                }
                "DISPUTE_DESK_SMTP_USERNAME" => self.smtp.username = Some(v.clone()),
                "DISPUTE_DESK_SMTP_PASSWORD" => self.smtp.password = Some(v.clone()),
                "DISPUTE_DESK_WEB_LISTEN" => self.web.listen = v.clone(),
                "DISPUTE_DESK_WEB_SECURE_COOKIES" => self.web.secure_cookies = matches!(v.as_str(), "1" | "true" | "yes"),
                "DISPUTE_DESK_ONE_CPU" => self.one_cpu = Some(v.parse().map_err(|_| bad("expected true or false"))?),
                "DISPUTE_DESK_LLM_PROVIDER" => match v.as_str() {
                    "rules" | "openai" => self.llm.provider = v.clone(),
                    _ => return Err(bad("expected rules or openai")),
                },
                "DISPUTE_DESK_LLM_BASE_URL" => self.llm.base_url = v.clone(),
                "DISPUTE_DESK_LLM_MODEL" => self.llm.model = v.clone(),
                "DISPUTE_DESK_LLM_CLASSIFY_MODEL" => self.llm.classify_model = Some(v.clone()),
                "DISPUTE_DESK_LLM_DRAFT_MODEL" => self.llm.draft_model = Some(v.clone()),
                "DISPUTE_DESK_LLM_API_KEY" => self.llm.api_key = Some(v.clone()),
                "DISPUTE_DESK_LLM_API_KEY_FILE" => self.llm.api_key_file = Some(PathBuf::from(v)),
                "DISPUTE_DESK_LLM_TIMEOUT_SECS" => self.llm.timeout_secs = v.parse().map_err(|_| bad("expected seconds"))?,
                "DISPUTE_DESK_LLM_RETRIES" => self.llm.retries = v.parse().map_err(|_| bad("expected a number"))?,
                "DISPUTE_DESK_LLM_MAX_CONCURRENT" => self.llm.max_concurrent = v.parse().map_err(|_| bad("expected a number"))?,
                "DISPUTE_DESK_LLM_DRAFT" => self.llm.draft = v.parse().map_err(|_| bad("expected true or false"))?,
                "DISPUTE_DESK_LLM_STRUCTURED" => {
                    self.llm.structured = match v.as_str() {
                        "json_schema" => Structured::JsonSchema,
                        "json_object" => Structured::JsonObject,
                        _ => return Err(bad("expected json_schema or json_object")),
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Each `[[mailbox]]` is complete and names are unique (checkpoints are keyed by name).
    pub fn validate_mailboxes(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid { path: "[[mailbox]]".into(), reason };
        let mut seen = std::collections::HashSet::new();
        for m in &self.mailbox {
            m.validate().map_err(|e| invalid(e.to_string()))?;
            if !seen.insert(m.name.as_str()) {
                return Err(invalid(format!("two mailboxes are named {:?}", m.name)));
            }
        }
        if let Some(n) = &self.sent_mailbox {
            if !seen.contains(n.as_str()) {
                return Err(invalid(format!("sent_mailbox {n:?} names no [[mailbox]]")));
            }
        }
        Ok(())
    }

    /// The mailbox whose Sent folder keeps the copies, if any.
    pub fn sent_mailbox(&self) -> Option<&MailboxConfig> {
        match &self.sent_mailbox {
            Some(n) => self.mailbox.iter().find(|m| &m.name == n),
            None => self.mailbox.first(),
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("dispute-desk.db").display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env_override_defaults() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.toml");
        std::fs::write(&f, "data_dir = \"/srv/dd\"\n[company]\nname = \"ACME\"\nfrom_address = \"compta@acme.fr\"\nsigner = \"Compta\"\n[smtp]\nhost = \"mail\"\nport = 587\ntls = \"starttls\"\n").unwrap();
        let mut c: Config = toml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert_eq!(c.database_url(), "sqlite:///srv/dd/dispute-desk.db");
        c.apply_env(&[("DISPUTE_DESK_SMTP_PORT".into(), "2525".into()), ("DISPUTE_DESK_SMTP_PASSWORD".into(), "s3cret".into())]).unwrap();
        assert_eq!(c.smtp.port, 2525);
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(c.apply_env(&[("DISPUTE_DESK_SMTP_PORT".into(), "x".into())]).is_err());
        assert!(!c.llm.enabled(), "the rules classifier is the default");
        c.apply_env(&[("DISPUTE_DESK_LLM_PROVIDER".into(), "openai".into()), ("DISPUTE_DESK_LLM_API_KEY".into(), "sk-llm-s3cret".into()), ("DISPUTE_DESK_LLM_CLASSIFY_MODEL".into(), "small".into())]).unwrap();
        assert!(c.llm.enabled() && c.llm.classify_model.as_deref() == Some("small"));
        assert!(!format!("{c:?}").contains("sk-llm-s3cret") && !serde_json::to_string(&c).unwrap().contains("sk-llm-s3cret"));
        let l: Config = toml::from_str("[llm]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:8080/v1\"\nmodel = \"m\"\ndraft_model = \"big\"\n[llm.prices.m]\ninput_per_m = 0.15\noutput_per_m = 0.6\n").unwrap();
        assert_eq!(l.llm.prices["m"].output_per_m, 0.6);
        assert!(toml::from_str::<Config>("[llm]\napi_key = \"x\"\n").is_err(), "the key is not read from the file itself");
        assert_eq!(c.one_cpu, None, "one CPU: decided per command unless set");
        c.apply_env(&[("DISPUTE_DESK_ONE_CPU".into(), "false".into())]).unwrap();
        assert_eq!(c.one_cpu, Some(false));
        assert!(c.apply_env(&[("DISPUTE_DESK_ONE_CPU".into(), "sometimes".into())]).is_err());
        assert_eq!(toml::from_str::<Config>("one_cpu = true\n").unwrap().one_cpu, Some(true));
        std::fs::write(&f, "bogus_key = 1\n").unwrap();
        assert!(matches!(Config::load(Some(&f)), Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn mailboxes_come_from_the_file_and_are_checked() {
        let text = "sent_mailbox = \"compta\"\n[[mailbox]]\nname = \"compta\"\nhost = \"imap.example.fr\"\ntls = \"starttls\"\nusername = \"c@x.fr\"\npassword = \"pw\"\nafter_ingest = \"keyword\"\n\n[[mailbox]]\nname = \"ventes\"\nhost = \"imap.example.fr\"\nusername = \"v@x.fr\"\noauth2_token_command = \"get-token\"\nfolder = \"Clients\"\n";
        let c: Config = toml::from_str(text).unwrap();
        assert_eq!(c.mailbox.len(), 2);
        assert_eq!((c.mailbox[0].port(), c.mailbox[0].folder.as_str()), (143, "INBOX"));
        assert_eq!((c.mailbox[1].port(), c.mailbox[1].folder.as_str()), (993, "Clients"));
        c.validate_mailboxes().unwrap();
        assert_eq!(c.sent_mailbox().unwrap().name, "compta");
        let mut twice = c.clone();
        twice.mailbox[1].name = "compta".into();
        assert!(twice.validate_mailboxes().is_err(), "names are checkpoint keys: unique");
        let mut nowhere = c.clone();
        nowhere.sent_mailbox = Some("other".into());
        assert!(nowhere.validate_mailboxes().is_err());
        assert!(toml::from_str::<Config>("[[mailbox]]\nname = \"x\"\nbogus = 1\n").is_err(), "unknown keys are refused");
    }
}
