//! The Slack carrier against dealreg-notify-fake's Slack double (written from Slack's
//! documentation), and one live post when SLACK_BOT_TOKEN and SLACK_CHANNEL are set.

use std::collections::BTreeMap;
use std::time::Duration;

use dealreg_notify::{
    CarrierError, Secret, SlackCarrier, SlackMessage, SlackTarget, Templates, BUILTIN_SPECS,
    COMMON_PLACEHOLDERS,
};
use dealreg_notify_fake::SlackDouble;
use serde_json::json;

fn message(channel: Option<&str>) -> SlackMessage {
    SlackMessage {
        channel: channel.map(str::to_owned),
        text: "Approved: your registration for Acme".into(),
        blocks: json!([
            {"type": "section", "text": {"type": "mrkdwn", "text": "Your registration for *Acme* was approved."}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "Partner Program"}]}
        ]),
    }
}

fn bot(double: &SlackDouble, token: &str) -> SlackCarrier {
    SlackCarrier::new(SlackTarget::Bot {
        token: Secret::new(token),
        api_base: double.api_base(),
    })
    .unwrap()
}

fn webhook(url: &str) -> SlackCarrier {
    SlackCarrier::new(SlackTarget::Webhook(Secret::new(url))).unwrap()
}

fn assert_secret_free(error: &CarrierError, secret: &str) {
    assert!(!error.to_string().contains(secret), "{error}");
    assert!(!format!("{error:?}").contains(secret), "{error:?}");
}

#[tokio::test]
async fn a_bot_post_is_accepted_with_channel_text_and_blocks() {
    let double = SlackDouble::start().await.unwrap();
    bot(&double, &double.token())
        .post(&message(Some("C123ABC456")))
        .await
        .unwrap();
    let posts = double.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["channel"], "C123ABC456");
    assert_eq!(posts[0]["text"], "Approved: your registration for Acme");
    assert_eq!(posts[0]["blocks"], message(None).blocks);
}

#[tokio::test]
async fn a_webhook_post_is_accepted_without_a_channel() {
    let double = SlackDouble::start().await.unwrap();
    webhook(&double.webhook_url())
        .post(&message(Some("C123ABC456")))
        .await
        .unwrap();
    let posts = double.posts();
    assert_eq!(posts.len(), 1);
    assert!(posts[0].get("channel").is_none());
}

#[tokio::test]
async fn a_rate_limit_is_transient_with_slacks_retry_after() {
    let double = SlackDouble::start().await.unwrap();
    double.rate_limit_next(2, 30);
    let error = bot(&double, &double.token())
        .post(&message(Some("C1")))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CarrierError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(30)),
        "{error:?}"
    );
    let error = webhook(&double.webhook_url())
        .post(&message(None))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CarrierError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(30)),
        "{error:?}"
    );
    // The limit is over: the next post goes through.
    bot(&double, &double.token())
        .post(&message(Some("C1")))
        .await
        .unwrap();
}

#[tokio::test]
async fn ok_false_errors_are_permanent_and_never_show_the_token() {
    let double = SlackDouble::start().await.unwrap();
    let token = double.token();

    let wrong = "xoxb-wrong-token-123";
    let error = bot(&double, wrong)
        .post(&message(Some("C1")))
        .await
        .unwrap_err();
    assert!(matches!(error, CarrierError::Permanent { .. }), "{error:?}");
    assert!(error.to_string().contains("invalid_auth"), "{error}");
    assert_secret_free(&error, wrong);

    let error = bot(&double, &token)
        .post(&message(Some(" ")))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("channel_not_found"), "{error}");
    assert!(matches!(error, CarrierError::Permanent { .. }));
    assert_secret_free(&error, &token);

    let mut bad_blocks = message(Some("C1"));
    bad_blocks.blocks = json!([{"type": "banner", "text": "no such block"}]);
    let error = bot(&double, &token).post(&bad_blocks).await.unwrap_err();
    assert!(error.to_string().contains("invalid_blocks"), "{error}");
    assert!(matches!(error, CarrierError::Permanent { .. }));

    double.fail_next("is_archived");
    let error = bot(&double, &token)
        .post(&message(Some("C1")))
        .await
        .unwrap_err();
    assert!(matches!(error, CarrierError::Permanent { .. }), "{error:?}");
    assert_secret_free(&error, &token);

    let error = bot(&double, &token).post(&message(None)).await.unwrap_err();
    assert!(matches!(error, CarrierError::Permanent { .. }), "{error:?}");

    assert!(double.posts().is_empty());
}

#[tokio::test]
async fn slack_side_trouble_is_transient() {
    let double = SlackDouble::start().await.unwrap();
    let token = double.token();
    double.fail_next("internal_error");
    let error = bot(&double, &token)
        .post(&message(Some("C1")))
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    double.fail_next_http(503);
    let error = bot(&double, &token)
        .post(&message(Some("C1")))
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    double.fail_next_http(502);
    let error = webhook(&double.webhook_url())
        .post(&message(None))
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn webhook_plain_text_errors_are_permanent_and_never_show_the_url() {
    let double = SlackDouble::start().await.unwrap();
    let url = double.webhook_url();
    for (name, status) in [
        ("channel_is_archived", "410"),
        ("action_prohibited", "403"),
        ("channel_not_found", "404"),
        ("invalid_payload", "400"),
    ] {
        double.fail_next(name);
        let error = webhook(&url).post(&message(None)).await.unwrap_err();
        assert!(matches!(error, CarrierError::Permanent { .. }), "{error:?}");
        assert!(error.to_string().contains(name), "{error}");
        assert!(error.to_string().contains(status), "{error}");
        assert_secret_free(&error, &url);
        assert_secret_free(&error, "/services/T000/B000/XXXX");
    }

    let mut empty = message(None);
    empty.text = String::new();
    empty.blocks = serde_json::Value::Null;
    let error = webhook(&url).post(&empty).await.unwrap_err();
    assert!(error.to_string().contains("no_text"), "{error}");

    let unknown = url.replace("XXXX", "YYYY");
    let error = webhook(&unknown).post(&message(None)).await.unwrap_err();
    assert!(error.to_string().contains("no_service"), "{error}");
    assert_secret_free(&error, &unknown);
    assert!(double.posts().is_empty());
}

#[tokio::test]
async fn an_unreachable_webhook_is_transient_and_the_url_is_not_in_the_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/services/TSECRET/BSECRET/very-secret-part");
    let carrier = webhook(&url);
    let error = carrier.post(&message(None)).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert_secret_free(&error, "very-secret-part");
    assert!(!format!("{carrier:?}").contains("very-secret-part"));
}

#[tokio::test]
async fn every_builtin_template_is_accepted_by_the_double() {
    let double = SlackDouble::start().await.unwrap();
    let carrier = bot(&double, &double.token());
    let templates = Templates::builtin().unwrap();
    for spec in BUILTIN_SPECS {
        let values: BTreeMap<String, String> = spec
            .placeholders
            .iter()
            .chain(COMMON_PLACEHOLDERS)
            .map(|name| (name.to_string(), format!("value of {name}")))
            .collect();
        let mut slack = templates.render(spec.kind, &values).unwrap().slack;
        slack.channel = Some("C123ABC456".into());
        carrier
            .post(&slack)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", spec.kind));
    }
    assert_eq!(double.posts().len(), BUILTIN_SPECS.len());
}

/// Posts once to real Slack when SLACK_BOT_TOKEN and SLACK_CHANNEL are set; otherwise
/// says why it did nothing.
#[tokio::test]
async fn live_slack_post() {
    let (Ok(token), Ok(channel)) = (
        std::env::var("SLACK_BOT_TOKEN"),
        std::env::var("SLACK_CHANNEL"),
    ) else {
        println!("skipped: SLACK_BOT_TOKEN and SLACK_CHANNEL are not both set");
        return;
    };
    let carrier = SlackCarrier::new(SlackTarget::Bot {
        token: Secret::new(token),
        api_base: dealreg_notify::DEFAULT_SLACK_API_BASE.into(),
    })
    .unwrap();
    carrier.post(&message(Some(&channel))).await.unwrap();
}
