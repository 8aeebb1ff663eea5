//! Alert templates: subject, text, HTML and Slack Block Kit per alert kind, with
//! `{{name}}` placeholders and `{{#name}}...{{/name}}` sections shown only when the value
//! is non-empty (an optional signed link, for instance).
//!
//! Values are escaped for where they land: HTML-escaped in `.html`, substituted inside
//! the JSON strings of `.slack.json` after the file is parsed (so no value can break the
//! JSON) and mrkdwn-escaped there, line breaks flattened in the subject. Placeholders are
//! checked when templates are loaded, so a typo fails at start-up, not at 3 a.m. on the
//! first alert of that kind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::SlackMessage;

/// The placeholders every kind may use besides its own.
pub const COMMON_PLACEHOLDERS: &[&str] = &["recipient_name", "program"];

/// One alert kind and the placeholder names its templates may use (besides
/// [`COMMON_PLACEHOLDERS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateSpec<'a> {
    pub kind: &'a str,
    pub placeholders: &'a [&'a str],
}

/// The built-in kinds: one line per kind, naming its placeholders; the macro embeds the
/// four files `templates/<kind>.{subject.txt,txt,html,slack.json}`. Adding a kind is one
/// line here plus its four files.
macro_rules! builtin_kinds {
    ($($kind:literal => [$($placeholder:literal),* $(,)?]),* $(,)?) => {
        /// The kinds shipped with default templates.
        pub const BUILTIN_SPECS: &[TemplateSpec<'static>] = &[
            $(TemplateSpec { kind: $kind, placeholders: &[$($placeholder),*] }),*
        ];
        const BUILTIN_FILES: &[(&str, [&str; 4])] = &[
            $(($kind, [
                include_str!(concat!("../templates/", $kind, ".subject.txt")),
                include_str!(concat!("../templates/", $kind, ".txt")),
                include_str!(concat!("../templates/", $kind, ".html")),
                include_str!(concat!("../templates/", $kind, ".slack.json")),
            ])),*
        ];
    };
}

builtin_kinds! {
    "registration_submitted" => ["partner", "company", "product_line", "amount", "registration_id", "decision_due", "action_url", "decline_url"],
    "approval_due" => ["partner", "company", "product_line", "amount", "registration_id", "decision_due", "action_url", "decline_url", "hours_left"],
    "approval_sla_breached" => ["partner", "company", "product_line", "amount", "registration_id", "decision_due", "action_url", "decline_url"],
    "extension_requested" => ["partner", "company", "product_line", "registration_id", "reason"],
    "note_added" => ["partner", "company", "product_line", "registration_id", "note"],
    "registration_approved" => ["company", "product_line", "protected_until", "registration_id", "action_url"],
    "registration_declined" => ["company", "product_line", "registration_id", "reason", "action_url"],
    "more_information_requested" => ["company", "product_line", "registration_id", "question", "action_url"],
    "protection_expiring" => ["company", "product_line", "registration_id", "protected_until", "action_url"],
    "protection_expired" => ["company", "product_line", "registration_id", "protected_until"],
    "extension_granted" => ["company", "product_line", "registration_id", "protected_until", "action_url"],
    "conflict_raised" => ["company", "registration_id", "conflict_kind", "acknowledge_by", "action_url"],
    "conflict_acknowledgement_due" => ["company", "registration_id", "conflict_kind", "acknowledge_by", "action_url"],
    "conflict_resolved" => ["company", "registration_id", "conflict_kind", "outcome", "action_url"],
    "stage_changed" => ["company", "registration_id", "stage", "action_url"],
    "next_step_overdue" => ["company", "registration_id", "next_step", "due", "action_url"],
    "payout_recorded" => ["company", "registration_id", "amount", "reference"],
    "announcement_published" => ["title", "text", "acknowledge_by", "action_url"],
    "announcement_acknowledgement_due" => ["title", "text", "acknowledge_by", "action_url"],
    "digest" => ["items"],
}

/// The four files of a kind, in the order of `BUILTIN_FILES`' arrays.
const SUFFIXES: [&str; 4] = ["subject.txt", "txt", "html", "slack.json"];

/// Why templates could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("reading template {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {file} is missing: no built-in default and no file in the directory")]
    Missing { file: String },
    #[error("template {file}: {reason}")]
    Syntax { file: String, reason: String },
    #[error("template {file} uses the unknown placeholder {{{{{placeholder}}}}}")]
    UnknownPlaceholder { file: String, placeholder: String },
    #[error("template {file} is not a Slack message: {reason}")]
    SlackShape { file: String, reason: String },
    #[error("no templates for the alert kind {0:?}")]
    UnknownKind(String),
    #[error("rendering {kind}: no value for the placeholder {{{{{placeholder}}}}}")]
    MissingValue { kind: String, placeholder: String },
}

/// A template's text split at its tags.
#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Value(String),
    Section(String, Vec<Node>),
}

/// How values are escaped where they land.
#[derive(Debug, Clone, Copy)]
enum Escape {
    /// E-mail subject: line breaks would be header injection; flattened to spaces.
    Subject,
    Plain,
    Html,
    /// Slack mrkdwn: `&`, `<`, `>` are control characters ("Escaping text" in Slack's
    /// formatting documentation); JSON quoting is done by serde afterwards.
    Mrkdwn,
}

#[derive(Debug, Clone)]
struct KindTemplates {
    subject: Vec<Node>,
    text: Vec<Node>,
    html: Vec<Node>,
    /// `{"text": "...", "blocks": [...]}` with tags left inside string values.
    slack: Value,
}

/// An alert rendered for every carrier.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Without a channel: the notifier knows where it goes.
    pub slack: SlackMessage,
}

/// Every kind's templates, checked.
#[derive(Debug, Clone)]
pub struct Templates {
    kinds: BTreeMap<String, KindTemplates>,
}

impl Templates {
    /// The built-in templates for [`BUILTIN_SPECS`].
    pub fn builtin() -> Result<Self, TemplateError> {
        Self::assemble(None, BUILTIN_SPECS)
    }

    /// Templates for `specs`, each file taken from `dir` when it has it and from the
    /// built-in defaults otherwise (so an override replaces only what it ships). Every
    /// placeholder is checked against its kind's names.
    pub fn load(dir: &Path, specs: &[TemplateSpec<'_>]) -> Result<Self, TemplateError> {
        Self::assemble(Some(dir), specs)
    }

    fn assemble(dir: Option<&Path>, specs: &[TemplateSpec<'_>]) -> Result<Self, TemplateError> {
        let mut kinds = BTreeMap::new();
        for spec in specs {
            let builtin = BUILTIN_FILES
                .iter()
                .find(|(kind, _)| *kind == spec.kind)
                .map(|(_, files)| files);
            let mut sources: Vec<(String, String)> = Vec::with_capacity(4);
            for (index, suffix) in SUFFIXES.iter().enumerate() {
                let name = format!("{}.{suffix}", spec.kind);
                let path = dir.map(|d| d.join(&name));
                let source = match (&path, builtin) {
                    (Some(path), _) if path.is_file() => {
                        let text =
                            std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
                                path: path.clone(),
                                source,
                            })?;
                        tracing::debug!(file = %path.display(), "template overridden");
                        (path.display().to_string(), text)
                    }
                    (_, Some(files)) => (format!("{name} (built-in)"), files[index].to_owned()),
                    (_, None) => return Err(TemplateError::Missing { file: name }),
                };
                sources.push(source);
            }
            let allowed = |name: &str| {
                spec.placeholders.contains(&name) || COMMON_PLACEHOLDERS.contains(&name)
            };
            let checked = |(file, text): &(String, String)| -> Result<Vec<Node>, TemplateError> {
                let nodes = parse(text).map_err(|reason| TemplateError::Syntax {
                    file: file.clone(),
                    reason,
                })?;
                check_names(&nodes, file, &allowed)?;
                Ok(nodes)
            };
            let subject = checked(&sources[0])?;
            let text = checked(&sources[1])?;
            let html = checked(&sources[2])?;
            let (slack_file, slack_text) = &sources[3];
            let slack: Value =
                serde_json::from_str(slack_text).map_err(|e| TemplateError::SlackShape {
                    file: slack_file.clone(),
                    reason: format!("not JSON: {e}"),
                })?;
            if !slack.get("text").is_some_and(Value::is_string)
                || !slack.get("blocks").is_some_and(Value::is_array)
            {
                return Err(TemplateError::SlackShape {
                    file: slack_file.clone(),
                    reason: "expected an object with a \"text\" string and a \"blocks\" array"
                        .into(),
                });
            }
            visit_strings(&slack, &mut |s| {
                checked(&(slack_file.clone(), s.to_owned())).map(|_| ())
            })?;
            kinds.insert(
                spec.kind.to_owned(),
                KindTemplates {
                    subject,
                    text,
                    html,
                    slack,
                },
            );
        }
        Ok(Templates { kinds })
    }

    /// The kinds these templates cover.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// Renders one alert. Every placeholder the templates use needs a value; a section's
    /// value may be missing or empty, which hides the section.
    pub fn render(
        &self,
        kind: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<Rendered, TemplateError> {
        let templates = self
            .kinds
            .get(kind)
            .ok_or_else(|| TemplateError::UnknownKind(kind.to_owned()))?;
        let fill = |nodes: &[Node], escape| -> Result<String, TemplateError> {
            let mut out = String::new();
            render_nodes(nodes, values, escape, &mut out).map_err(|placeholder| {
                TemplateError::MissingValue {
                    kind: kind.to_owned(),
                    placeholder,
                }
            })?;
            Ok(out)
        };
        let subject = fill(&templates.subject, Escape::Subject)?.trim().to_owned();
        let text = fill(&templates.text, Escape::Plain)?;
        let html = fill(&templates.html, Escape::Html)?;
        let slack = map_strings(&templates.slack, &mut |s| {
            let nodes = parse(s).map_err(|reason| TemplateError::Syntax {
                file: format!("{kind}.slack.json"),
                reason,
            })?;
            fill(&nodes, Escape::Mrkdwn)
        })?;
        let slack_text = slack
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let blocks = slack.get("blocks").cloned().unwrap_or(Value::Null);
        Ok(Rendered {
            subject,
            text,
            html,
            slack: SlackMessage {
                channel: None,
                text: slack_text,
                blocks,
            },
        })
    }
}

/// Splits a template into text, `{{name}}` values and `{{#name}}...{{/name}}` sections.
fn parse(source: &str) -> Result<Vec<Node>, String> {
    // A stack of open sections: (name, nodes so far); the bottom is the whole template.
    let mut stack: Vec<(Option<String>, Vec<Node>)> = vec![(None, Vec::new())];
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        let (before, after) = rest.split_at(open);
        let close = after.find("}}").ok_or_else(|| {
            format!(
                "unclosed tag {:?}",
                after.chars().take(30).collect::<String>()
            )
        })?;
        let tag = after[2..close].trim();
        rest = &after[close + 2..];
        let top = stack.last_mut().ok_or("unbalanced sections")?;
        if !before.is_empty() {
            top.1.push(Node::Text(before.to_owned()));
        }
        if let Some(name) = tag.strip_prefix('#') {
            stack.push((Some(valid_name(name.trim())?), Vec::new()));
        } else if let Some(name) = tag.strip_prefix('/') {
            let name = valid_name(name.trim())?;
            match stack.pop() {
                Some((Some(open), nodes)) if open == name => {
                    let parent = stack.last_mut().ok_or("unbalanced sections")?;
                    parent.1.push(Node::Section(name, nodes));
                }
                Some((Some(open), _)) => {
                    return Err(format!(
                        "{{{{/{name}}}}} closes the section {{{{#{open}}}}}"
                    ))
                }
                _ => return Err(format!("{{{{/{name}}}}} without {{{{#{name}}}}}")),
            }
        } else {
            let name = valid_name(tag)?;
            top.1.push(Node::Value(name));
        }
    }
    let (open, mut nodes) = stack.pop().ok_or("unbalanced sections")?;
    if let Some(open) = open {
        return Err(format!("section {{{{#{open}}}}} is never closed"));
    }
    if !stack.is_empty() {
        return Err("unbalanced sections".into());
    }
    if !rest.is_empty() {
        nodes.push(Node::Text(rest.to_owned()));
    }
    Ok(nodes)
}

fn valid_name(name: &str) -> Result<String, String> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{{{{{name}}}}} is not a placeholder name (a-z, 0-9, _)"
        ))
    }
}

fn check_names(
    nodes: &[Node],
    file: &str,
    allowed: &dyn Fn(&str) -> bool,
) -> Result<(), TemplateError> {
    for node in nodes {
        let (name, inner) = match node {
            Node::Text(_) => continue,
            Node::Value(name) => (name, None),
            Node::Section(name, inner) => (name, Some(inner)),
        };
        if !allowed(name) {
            return Err(TemplateError::UnknownPlaceholder {
                file: file.to_owned(),
                placeholder: name.clone(),
            });
        }
        if let Some(inner) = inner {
            check_names(inner, file, allowed)?;
        }
    }
    Ok(())
}

/// Renders nodes; `Err` names a placeholder without a value.
fn render_nodes(
    nodes: &[Node],
    values: &BTreeMap<String, String>,
    escape: Escape,
    out: &mut String,
) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Value(name) => {
                let value = values.get(name).ok_or_else(|| name.clone())?;
                push_escaped(value, escape, out);
            }
            Node::Section(name, inner) => {
                if values.get(name).is_some_and(|v| !v.trim().is_empty()) {
                    render_nodes(inner, values, escape, out)?;
                }
            }
        }
    }
    Ok(())
}

fn push_escaped(value: &str, escape: Escape, out: &mut String) {
    for c in value.chars() {
        match (escape, c) {
            (Escape::Subject, '\r' | '\n') => out.push(' '),
            (Escape::Html, '&') | (Escape::Mrkdwn, '&') => out.push_str("&amp;"),
            (Escape::Html, '<') | (Escape::Mrkdwn, '<') => out.push_str("&lt;"),
            (Escape::Html, '>') | (Escape::Mrkdwn, '>') => out.push_str("&gt;"),
            (Escape::Html, '"') => out.push_str("&quot;"),
            (Escape::Html, '\'') => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

fn visit_strings(
    value: &Value,
    visit: &mut dyn FnMut(&str) -> Result<(), TemplateError>,
) -> Result<(), TemplateError> {
    match value {
        Value::String(s) => visit(s),
        Value::Array(items) => items.iter().try_for_each(|v| visit_strings(v, visit)),
        Value::Object(map) => map.values().try_for_each(|v| visit_strings(v, visit)),
        _ => Ok(()),
    }
}

/// A copy of `value` with every string value passed through `map` (keys are left alone).
fn map_strings(
    value: &Value,
    map: &mut dyn FnMut(&str) -> Result<String, TemplateError>,
) -> Result<Value, TemplateError> {
    Ok(match value {
        Value::String(s) => Value::String(map(s)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| map_strings(v, map))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(k, v)| Ok((k.clone(), map_strings(v, map)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}
