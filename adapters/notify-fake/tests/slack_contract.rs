//! The Slack double against examples from Slack's documentation: the request bodies shown
//! on the chat.postMessage and incoming webhooks pages are accepted, and the documented
//! bad requests are refused the documented way. The examples are reproduced from the
//! pages as read when this was written (not fetched by the test).

use dealreg_notify_fake::SlackDouble;
use serde_json::{json, Value};

async fn post_message(
    double: &SlackDouble,
    token: Option<&str>,
    content_type: &str,
    body: String,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/chat.postMessage", double.api_base()))
        .header("Content-Type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn post_json(double: &SlackDouble, body: Value) -> Value {
    let (status, answer) = post_message(
        double,
        Some(&double.token()),
        "application/json; charset=utf-8",
        body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "Web API errors are HTTP 200");
    answer
}

async fn webhook(
    double: &SlackDouble,
    url: &str,
    content_type: &str,
    body: String,
) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let _ = double;
    (status, response.text().await.unwrap())
}

/// chat.postMessage page, the JSON example: channel and text.
#[tokio::test]
async fn post_message_documented_text_example_is_accepted() {
    let double = SlackDouble::start().await.unwrap();
    let answer = post_json(
        &double,
        json!({"channel": "C123ABC456", "text": "I hope the tour went well, Mr. Wonka."}),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["channel"], "C123ABC456");
    let ts = answer["ts"].as_str().unwrap();
    let (secs, seq) = ts.split_once('.').unwrap();
    assert!(secs.parse::<u64>().is_ok() && seq.len() == 6, "{ts}");
    assert_eq!(
        answer["message"]["text"],
        "I hope the tour went well, Mr. Wonka."
    );
    assert_eq!(double.posts().len(), 1);
}

/// chat.postMessage page, the blocks argument's example.
#[tokio::test]
async fn post_message_documented_blocks_example_is_accepted() {
    let double = SlackDouble::start().await.unwrap();
    let answer = post_json(
        &double,
        json!({
            "channel": "C123ABC456",
            "blocks": [{"type": "section", "text": {"type": "plain_text", "text": "Hello world"}}]
        }),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
}

/// Incoming webhooks page: the simplest payload and the Block Kit example.
#[tokio::test]
async fn webhook_documented_examples_are_accepted() {
    let double = SlackDouble::start().await.unwrap();
    let url = double.webhook_url();
    let (status, body) = webhook(
        &double,
        &url,
        "application/json",
        json!({"text": "Hello, world."}).to_string(),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let example = json!({
        "text": "Danny Torrence left a 1 star review for your property.",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "Danny Torrence left the following review for your property:"}},
            {"type": "section", "block_id": "section567",
             "text": {"type": "mrkdwn", "text": "<https://example.com|Overlook Hotel> \n :star: \n Doors had too many axe holes, guest in room 237 was far too rowdy, whole place felt stuck in the 1920s."},
             "accessory": {"type": "image", "image_url": "https://is5-ssl.mzstatic.com/image/thumb/Purple3/v4/d3/72/5c/d3725c8f-c642-5d69-1904-aa36e4297885/source/256x256bb.jpg", "alt_text": "Haunted hotel image"}},
            {"type": "section", "block_id": "section789",
             "fields": [{"type": "mrkdwn", "text": "*Average Rating*\n1.0"}]}
        ]
    });
    let (status, body) = webhook(&double, &url, "application/json", example.to_string()).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(double.posts().len(), 2);
}

#[tokio::test]
async fn post_message_refuses_what_the_documentation_refuses() {
    let double = SlackDouble::start().await.unwrap();
    let good = json!({"channel": "C1", "text": "hi"}).to_string();

    let (_, answer) = post_message(&double, None, "application/json", good.clone()).await;
    assert_eq!(answer, json!({"ok": false, "error": "not_authed"}));
    let (_, answer) = post_message(
        &double,
        Some("xoxb-other"),
        "application/json",
        good.clone(),
    )
    .await;
    assert_eq!(answer["error"], "invalid_auth");
    let (_, answer) = post_message(&double, Some(&double.token()), "text/plain", good).await;
    assert_eq!(answer["error"], "invalid_form_data");
    let (_, answer) = post_message(
        &double,
        Some(&double.token()),
        "application/json",
        "{".into(),
    )
    .await;
    assert_eq!(answer["error"], "invalid_json");

    let cases = [
        (json!({"text": "no channel"}), "channel_not_found"),
        (json!({"channel": "C1"}), "no_text"),
        (
            json!({"channel": "C1", "text": "", "blocks": []}),
            "no_text",
        ),
        (
            json!({"channel": "C1", "blocks": [{"type": "carousel"}]}),
            "invalid_blocks",
        ),
        (
            json!({"channel": "C1", "blocks": ["section"]}),
            "invalid_blocks",
        ),
        (
            json!({"channel": "C1", "blocks": {"type": "section"}}),
            "invalid_blocks",
        ),
        (
            json!({"channel": "C1", "blocks": [{"type": "section"}]}),
            "invalid_blocks",
        ),
        (
            json!({"channel": "C1", "blocks": vec![json!({"type": "divider"}); 51]}),
            "invalid_blocks",
        ),
        (
            json!({"channel": "C1", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x".repeat(3001)}}]}),
            "invalid_blocks",
        ),
        (
            json!({"channel": "C1", "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "bold"}}]}),
            "invalid_blocks",
        ),
        (
            json!({"channel": "C1", "text": "x".repeat(40_001)}),
            "msg_too_long",
        ),
    ];
    for (body, error) in cases {
        let answer = post_json(&double, body.clone()).await;
        assert_eq!(answer["ok"], false, "{body}");
        assert_eq!(answer["error"], error, "{body}");
    }
    // The limits themselves are allowed.
    let answer = post_json(
        &double,
        json!({"channel": "C1", "text": "fallback", "blocks": vec![json!({"type": "divider"}); 50]}),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(double.posts().len(), 1);
}

#[tokio::test]
async fn webhook_refuses_with_plain_text_names_and_statuses() {
    let double = SlackDouble::start().await.unwrap();
    let url = double.webhook_url();
    let (status, body) = webhook(&double, &url, "application/json", "not json".into()).await;
    assert_eq!((status, body.as_str()), (400, "invalid_payload"));
    let (status, body) = webhook(
        &double,
        &url,
        "application/json",
        json!({"blocks": []}).to_string(),
    )
    .await;
    assert_eq!((status, body.as_str()), (400, "no_text"));
    let (status, body) = webhook(
        &double,
        &url,
        "application/json",
        json!({"text": "x", "blocks": [{"type": "nope"}]}).to_string(),
    )
    .await;
    assert_eq!((status, body.as_str()), (400, "invalid_payload"));
    let (status, body) = webhook(
        &double,
        &url.replace("XXXX", "ZZZZ"),
        "application/json",
        json!({"text": "x"}).to_string(),
    )
    .await;
    assert_eq!((status, body.as_str()), (404, "no_service"));
    double.fail_next("channel_is_archived");
    let (status, body) = webhook(
        &double,
        &url,
        "application/json",
        json!({"text": "x"}).to_string(),
    )
    .await;
    assert_eq!((status, body.as_str()), (410, "channel_is_archived"));
    assert!(double.posts().is_empty());
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_then_pass() {
    let double = SlackDouble::start().await.unwrap();
    double.rate_limit_next(1, 7);
    let response = reqwest::Client::new()
        .post(format!("{}/chat.postMessage", double.api_base()))
        .bearer_auth(double.token())
        .json(&json!({"channel": "C1", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let answer = post_json(&double, json!({"channel": "C1", "text": "hi"})).await;
    assert_eq!(answer["ok"], true);
}
