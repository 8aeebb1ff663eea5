//! The Slack double against examples from Slack's documentation: the request bodies shown
//! on the chat.postMessage and incoming webhooks pages are accepted, and the documented
//! bad requests are refused the documented way. The examples are reproduced from the
//! pages as read when this was written (not fetched by the test); the pages are listed at
//! the top of `src/slack.rs`.

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
    // chat.postMessage lists only JSON and form bodies: other types are invalid_post_type,
    // a bad charset invalid_charset, no Content-Type missing_post_type.
    let (_, answer) =
        post_message(&double, Some(&double.token()), "text/plain", good.clone()).await;
    assert_eq!(answer["error"], "invalid_post_type");
    let (_, answer) = post_message(
        &double,
        Some(&double.token()),
        "application/json; charset=utf-16",
        good.clone(),
    )
    .await;
    assert_eq!(answer["error"], "invalid_charset");
    let response = reqwest::Client::new()
        .post(format!("{}/chat.postMessage", double.api_base()))
        .bearer_auth(double.token())
        .body(good.clone())
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "missing_post_type");
    // With JSON the token must come in the Authorization header, not the body.
    let in_body = json!({"token": double.token(), "channel": "C1", "text": "hi"}).to_string();
    let (_, answer) = post_message(&double, None, "application/json", in_body).await;
    assert_eq!(answer["error"], "not_authed");
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
            json!({"channel": "C1", "blocks": [{"type": "no_such_block"}]}),
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
            json!({"channel": "C1", "attachments": vec![json!({"text": "a"}); 101]}),
            "too_many_attachments",
        ),
        (
            json!({"channel": "C1", "text": "a", "markdown_text": "**b**"}),
            "markdown_text_conflict",
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
    // 2016 webhook errors changelog: user_not_found is 400, rollup_error 500.
    for (name, expected) in [
        ("user_not_found", 400),
        ("action_prohibited", 403),
        ("channel_not_found", 404),
        ("rollup_error", 500),
    ] {
        double.fail_next(name);
        let (status, body) = webhook(
            &double,
            &url,
            "application/json",
            json!({"text": "x"}).to_string(),
        )
        .await;
        assert_eq!((status, body.as_str()), (expected, name));
    }
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

/// chat.postMessage page: the token "as a POST parameter" with a form body, and the
/// `blocks` argument's example "presented as a URL-encoded string".
#[tokio::test]
async fn post_message_form_body_with_token_parameter_is_accepted() {
    let double = SlackDouble::start().await.unwrap();
    let blocks = r#"[{"type": "section", "text": {"type": "plain_text", "text": "Hello world"}}]"#;
    let body = format!(
        "token={}&channel=C123ABC456&text=Hello+world&blocks={}",
        double.token(),
        encode(blocks)
    );
    let (status, answer) =
        post_message(&double, None, "application/x-www-form-urlencoded", body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["message"]["text"], "Hello world");
    assert_eq!(answer["message"]["blocks"][0]["type"], "section");
    let (_, answer) = post_message(
        &double,
        None,
        "application/x-www-form-urlencoded",
        "token=xoxb-other&channel=C1&text=hi".into(),
    )
    .await;
    assert_eq!(answer["error"], "invalid_auth");
    let (_, answer) = post_message(
        &double,
        None,
        "application/x-www-form-urlencoded",
        format!("token={}&channel=C1&blocks=%5B", double.token()),
    )
    .await;
    assert_eq!(answer["error"], "invalid_blocks_format");
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// chat.postMessage page: the `attachments` and `markdown_text` argument examples each
/// describe a message alone; the answer has the shape of the documented response example.
#[tokio::test]
async fn post_message_documented_attachments_and_markdown_examples_are_accepted() {
    let double = SlackDouble::start().await.unwrap();
    let answer = post_json(
        &double,
        json!({"channel": "C123ABC456", "attachments": [{"pretext": "pre-hello", "text": "text-world"}]}),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
    // Documented response example: ok, channel, ts, message {type "message", subtype
    // "bot_message", bot_id, ts, attachments}.
    assert_eq!(answer["message"]["type"], "message");
    assert_eq!(answer["message"]["subtype"], "bot_message");
    assert!(answer["message"]["bot_id"].is_string());
    assert_eq!(answer["message"]["ts"], answer["ts"]);
    assert_eq!(answer["message"]["attachments"][0]["text"], "text-world");
    let answer = post_json(
        &double,
        json!({"channel": "C123ABC456", "markdown_text": "**This is bold text**"}),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
}

/// Truncating-really-long-messages changelog: text over 40,000 characters is truncated
/// and still posted, with the warning `message_truncated`.
#[tokio::test]
async fn post_message_truncates_text_over_40000_characters() {
    let double = SlackDouble::start().await.unwrap();
    let answer = post_json(
        &double,
        json!({"channel": "C1", "text": "x".repeat(40_001)}),
    )
    .await;
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["message"]["text"].as_str().unwrap().len(), 40_000);
    assert_eq!(
        answer["response_metadata"]["warnings"][0],
        "message_truncated"
    );
    let answer = post_json(
        &double,
        json!({"channel": "C1", "text": "x".repeat(40_000)}),
    )
    .await;
    assert!(answer.get("response_metadata").is_none(), "{answer}");
}

/// Header block page: its JSON example, sent through the webhook.
#[tokio::test]
async fn webhook_accepts_documented_header_block_example() {
    let double = SlackDouble::start().await.unwrap();
    let example = json!({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "A Heartfelt Header"}}]});
    let (status, body) = webhook(
        &double,
        &double.webhook_url(),
        "application/json",
        example.to_string(),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}
