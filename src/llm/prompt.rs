//! llm::prompt: one prompt of the model (`prompts/NAME.tera`, else the copy
//! built into the binary), rendered and split at its `=== USER ===` line into
//! the system and the user message. The name carries the version
//! (`classify.v2`) and is recorded with every result and call.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cannot read prompt {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("invalid prompt {name}: {reason}")]
    Template { name: String, reason: String },
}

/// A loaded prompt.
#[derive(Debug)]
pub struct Prompt {
    name: &'static str,
    tera: tera::Tera,
}

impl Prompt {
    /// `dir/NAME.tera` when it exists, else `embedded`.
    pub fn load(dir: Option<&Path>, name: &'static str, embedded: &str) -> Result<Prompt, PromptError> {
        let text = match dir.map(|d| d.join(format!("{name}.tera"))) {
            Some(p) if p.exists() => std::fs::read_to_string(&p).map_err(|source| PromptError::Read { file: p.display().to_string(), source })?,
            _ => embedded.to_string(),
        };
        let mut tera = tera::Tera::default();
        tera.add_raw_template(name, &text).map_err(|e| PromptError::Template { name: name.into(), reason: e.to_string() })?;
        Ok(Prompt { name, tera })
    }

    /// The system and the user message.
    pub fn render(&self, c: &tera::Context) -> Result<(String, String), PromptError> {
        let text = self.tera.render(self.name, c).map_err(|e| PromptError::Template { name: self.name.into(), reason: e.to_string() })?;
        match text.trim_start().split_once("=== USER ===") {
            Some((s, u)) => Ok((s.trim().to_string(), u.trim().to_string())),
            None => Err(PromptError::Template { name: self.name.into(), reason: "no \"=== USER ===\" line between the system and the user message".into() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_splits_at_its_user_line_and_one_without_it_is_refused() {
        let p = Prompt::load(None, "t.v1", "{# note #}\nYou sort mail for {{ company }}.\n=== USER ===\nMail: {{ body }}\n").unwrap();
        let mut c = tera::Context::new();
        c.insert("company", "ACME");
        c.insert("body", "hello");
        assert_eq!(p.render(&c).unwrap(), ("You sort mail for ACME.".to_string(), "Mail: hello".to_string()));
        let bad = Prompt::load(None, "t.v1", "no user line").unwrap();
        assert!(bad.render(&c).unwrap_err().to_string().contains("=== USER ==="));
    }
}
