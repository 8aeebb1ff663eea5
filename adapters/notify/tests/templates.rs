//! The alert templates: built-ins, overrides, escaping, load-time checks.

use std::collections::BTreeMap;

use dealreg_notify::{TemplateError, TemplateSpec, Templates, BUILTIN_SPECS, COMMON_PLACEHOLDERS};
use serde_json::Value;

fn values(spec: &TemplateSpec<'_>) -> BTreeMap<String, String> {
    spec.placeholders
        .iter()
        .chain(COMMON_PLACEHOLDERS)
        .map(|name| (name.to_string(), format!("<{name}-value>")))
        .collect()
}

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[test]
fn every_builtin_kind_renders_with_all_its_placeholders() {
    let templates = Templates::builtin().unwrap();
    assert_eq!(templates.kinds().count(), BUILTIN_SPECS.len());
    assert_eq!(BUILTIN_SPECS.len(), 20, "the 19 alert kinds and the digest");
    for spec in BUILTIN_SPECS {
        let values = values(spec);
        let rendered = templates.render(spec.kind, &values).unwrap();
        let mut slack_strings = Vec::new();
        strings(&rendered.slack.blocks, &mut slack_strings);
        for text in [
            &rendered.subject,
            &rendered.text,
            &rendered.html,
            &rendered.slack.text,
        ]
        .into_iter()
        .chain(slack_strings.iter())
        {
            assert!(!text.contains("{{"), "{}: {text}", spec.kind);
        }
        assert!(!rendered.subject.is_empty() && !rendered.subject.contains('\n'));
        assert!(
            rendered.text.contains("<recipient_name-value>"),
            "{}",
            spec.kind
        );
        assert!(
            rendered.html.contains("&lt;program-value&gt;"),
            "{}",
            spec.kind
        );
        assert!(rendered.slack.blocks.is_array());
        // Every placeholder the kind declares shows somewhere.
        let all = format!(
            "{}{}{}",
            rendered.subject, rendered.text, rendered.slack.text
        );
        for name in spec.placeholders {
            assert!(
                all.contains(&format!("<{name}-value>")),
                "{}: {name} unused",
                spec.kind
            );
        }
    }
}

#[test]
fn an_empty_action_url_omits_the_link_line() {
    let templates = Templates::builtin().unwrap();
    let spec = BUILTIN_SPECS
        .iter()
        .find(|s| s.kind == "registration_approved")
        .unwrap();
    let mut values = values(spec);
    values.insert(
        "action_url".into(),
        "https://dealreg.example/a?sig=1&x=2".into(),
    );
    let with = templates.render(spec.kind, &values).unwrap();
    assert!(with
        .text
        .contains("View the registration: https://dealreg.example/a?sig=1&x=2"));
    assert!(with
        .html
        .contains("href=\"https://dealreg.example/a?sig=1&amp;x=2\""));
    assert!(with
        .slack
        .blocks
        .to_string()
        .contains("|View the registration>"));

    values.insert("action_url".into(), String::new());
    let without = templates.render(spec.kind, &values).unwrap();
    assert!(
        !without.text.contains("View the registration"),
        "{}",
        without.text
    );
    assert!(!without.html.contains("href"), "{}", without.html);
    assert!(!without
        .slack
        .blocks
        .to_string()
        .contains("View the registration"));
    values.remove("action_url");
    assert!(templates.render(spec.kind, &values).is_ok());
}

#[test]
fn values_are_html_escaped_in_the_html_only() {
    let templates = Templates::builtin().unwrap();
    let spec = &BUILTIN_SPECS[0];
    let mut values = values(spec);
    values.insert("company".into(), "<script>alert('x')</script> & Co".into());
    let rendered = templates.render(spec.kind, &values).unwrap();
    assert!(!rendered.html.contains("<script>"), "{}", rendered.html);
    assert!(rendered
        .html
        .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co"));
    assert!(rendered.text.contains("<script>alert('x')</script> & Co"));
    // Slack mrkdwn control characters are escaped too.
    assert!(!rendered.slack.blocks.to_string().contains("<script>"));
}

#[test]
fn a_value_cannot_break_the_slack_json() {
    let templates = Templates::builtin().unwrap();
    let spec = &BUILTIN_SPECS[0];
    let plain = templates.render(spec.kind, &values(spec)).unwrap();
    let mut values = values(spec);
    let attack =
        "\"}]},{\"type\":\"image\",\"image_url\":\"https://evil.example/x.png\"},{\"x\":\"\\";
    values.insert("company".into(), attack.into());
    let rendered = templates.render(spec.kind, &values).unwrap();
    let serialized = serde_json::to_string(&rendered.slack.blocks).unwrap();
    let reparsed: Value = serde_json::from_str(&serialized).unwrap();
    let blocks = reparsed.as_array().unwrap();
    assert_eq!(blocks.len(), plain.slack.blocks.as_array().unwrap().len());
    assert!(blocks.iter().all(|b| b["type"] != "image"));
    assert!(rendered.slack.text.contains(attack));
}

#[test]
fn an_unknown_placeholder_is_refused_at_load_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("registration_approved.html"),
        "<p>{{company}} until {{protected_untill}}</p>",
    )
    .unwrap();
    let error = Templates::load(dir.path(), BUILTIN_SPECS).unwrap_err();
    assert!(
        matches!(&error, TemplateError::UnknownPlaceholder { placeholder, .. } if placeholder == "protected_untill"),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(shown.contains("registration_approved.html"), "{shown}");
    assert!(shown.contains("protected_untill"), "{shown}");

    std::fs::write(
        dir.path().join("registration_approved.html"),
        "<p>{{company}}</p>",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("digest.slack.json"),
        r#"{"text": "{{items}}", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "{{secret_field}}"}}]}"#,
    )
    .unwrap();
    let error = Templates::load(dir.path(), BUILTIN_SPECS).unwrap_err();
    assert!(error.to_string().contains("digest.slack.json"), "{error}");
    assert!(error.to_string().contains("secret_field"), "{error}");
}

#[test]
fn a_directory_override_replaces_only_the_files_it_has() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("registration_approved.subject.txt"),
        "Good news about {{company}}\n",
    )
    .unwrap();
    let templates = Templates::load(dir.path(), BUILTIN_SPECS).unwrap();
    let builtin = Templates::builtin().unwrap();
    let spec = BUILTIN_SPECS
        .iter()
        .find(|s| s.kind == "registration_approved")
        .unwrap();
    let values = values(spec);
    let overridden = templates.render(spec.kind, &values).unwrap();
    let original = builtin.render(spec.kind, &values).unwrap();
    assert_eq!(overridden.subject, "Good news about <company-value>");
    assert_eq!(overridden.text, original.text);
    assert_eq!(overridden.html, original.html);
    assert_eq!(overridden.slack, original.slack);
}

#[test]
fn a_new_kind_without_builtins_needs_its_four_files() {
    let dir = tempfile::tempdir().unwrap();
    let specs = [TemplateSpec {
        kind: "quota_reached",
        placeholders: &["quota"],
    }];
    let error = Templates::load(dir.path(), &specs).unwrap_err();
    assert!(matches!(error, TemplateError::Missing { .. }), "{error:?}");
    for (suffix, body) in [
        ("subject.txt", "Quota {{quota}} reached"),
        ("txt", "Hello {{recipient_name}}, quota {{quota}}."),
        ("html", "<p>Quota {{quota}}</p>"),
        ("slack.json", r#"{"text": "Quota {{quota}}", "blocks": []}"#),
    ] {
        std::fs::write(dir.path().join(format!("quota_reached.{suffix}")), body).unwrap();
    }
    let templates = Templates::load(dir.path(), &specs).unwrap();
    let values = BTreeMap::from([
        ("quota".to_string(), "10".to_string()),
        ("recipient_name".to_string(), "Ann".to_string()),
    ]);
    assert_eq!(
        templates.render("quota_reached", &values).unwrap().text,
        "Hello Ann, quota 10."
    );
}

#[test]
fn rendering_refuses_a_missing_value_an_unknown_kind_and_bad_syntax() {
    let templates = Templates::builtin().unwrap();
    let error = templates
        .render("registration_approved", &BTreeMap::new())
        .unwrap_err();
    assert!(
        matches!(error, TemplateError::MissingValue { .. }),
        "{error:?}"
    );
    assert!(matches!(
        templates.render("no_such_kind", &BTreeMap::new()),
        Err(TemplateError::UnknownKind(_))
    ));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stage_changed.txt"),
        "{{#action_url}}Open {{action_url}}",
    )
    .unwrap();
    let error = Templates::load(dir.path(), BUILTIN_SPECS).unwrap_err();
    assert!(matches!(error, TemplateError::Syntax { .. }), "{error:?}");
    assert!(error.to_string().contains("stage_changed.txt"), "{error}");
}

#[test]
fn a_line_break_in_a_value_does_not_reach_the_subject() {
    let templates = Templates::builtin().unwrap();
    let spec = BUILTIN_SPECS
        .iter()
        .find(|s| s.kind == "registration_approved")
        .unwrap();
    let mut values = values(spec);
    values.insert("company".into(), "Acme\r\nBcc: x@evil.example".into());
    let rendered = templates.render(spec.kind, &values).unwrap();
    assert!(!rendered.subject.contains('\n') && !rendered.subject.contains('\r'));
}
