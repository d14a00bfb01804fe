//! The whole path: a real sign-in against the OpenID provider, the app shipping its
//! activity natively, and the Loki stand-in storing what arrives.

mod common;
mod loki_common;

use std::time::Duration;

use common::{
    TestApp, browser_like_client, free_port,
    oidc::{sign_in, spawn_with_provider},
};
use loki_common::Receiver;
use serde_json::Value;

fn loki_env(receiver: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("LOKI_URL", receiver.url.clone()),
        ("LOKI_BATCH_MAX_WAIT_MS", "100".into()),
        ("NIXTLA_ENV", "e2e".into()),
        ("LOKI_LABELS", "team=web".into()),
    ]
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect()
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"))
}

#[tokio::test]
async fn activity_reaches_loki_as_printed() {
    let receiver = Receiver::start(&[]);
    let env = loki_env(&receiver);
    let (mut app, _provider) = spawn_with_provider(&as_refs(&env)).await;
    let client = browser_like_client();
    assert_eq!(sign_in(&client, &app).await.status(), 303);
    client.get(app.url("/nixtla")).send().await.unwrap();
    client.post(app.url("/logout")).send().await.unwrap();
    app.wait_for_event("logout", |_| true).await;
    assert_eq!(app.terminate(), Some(0), "nixtla did not exit cleanly");

    let streams = receiver.streams().await;
    assert_eq!(streams.len(), 1, "expected one stream: {:?}", streams);
    let labels = &streams[0].labels;
    assert_eq!(labels.len(), 3, "{labels:?}");
    assert_eq!(labels["service_name"], "nixtla");
    assert_eq!(labels["env"], "e2e");
    assert_eq!(labels["team"], "web");

    let entries = &streams[0].entries;
    let printed = app.stdout_lines();
    for entry in entries {
        assert!(
            printed.contains(&entry.line),
            "Loki line not on stdout: {}",
            entry.line
        );
    }
    let activity: Vec<&String> = printed
        .iter()
        .filter(|line| parse(line)["target"] == "nixtla::activity")
        .collect();
    for line in &activity {
        assert!(
            entries.iter().any(|entry| &&entry.line == line),
            "not shipped: {line}"
        );
    }

    let steps: Vec<(String, &serde_json::Map<String, Value>)> = entries
        .iter()
        .filter_map(|entry| {
            let event = entry.metadata.get("event")?.as_str()?.to_owned();
            (event != "http_request").then_some((event, &entry.metadata))
        })
        .collect();
    let names: Vec<&str> = steps.iter().map(|(event, _)| event.as_str()).collect();
    assert_eq!(names, ["login", "page_view", "logout"]);
    for (event, metadata) in &steps {
        assert_eq!(metadata["user_id"], "u-1", "{event}: {metadata:?}");
        assert_eq!(
            metadata["user_name"], "Ada Lovelace",
            "{event}: {metadata:?}"
        );
        assert_eq!(metadata["level"], "INFO", "{event}: {metadata:?}");
        assert!(metadata.contains_key("request_id"), "{event}: {metadata:?}");
    }
    assert_eq!(steps[1].1["route"], "/nixtla");

    let timestamps: Vec<i64> = entries.iter().map(|entry| entry.timestamp_ns).collect();
    assert!(
        timestamps.windows(2).all(|pair| pair[0] < pair[1]),
        "timestamps not increasing"
    );

    let report = app
        .log_events()
        .into_iter()
        .find(|event| event["message"] == "Loki shipper stopped")
        .expect("shutdown report on stdout");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(
        report["delivered"].as_u64(),
        Some(entries.len() as u64),
        "{report}"
    );
}

#[tokio::test]
async fn signed_in_requests_carry_user_metadata() {
    let receiver = Receiver::start(&[]);
    let env = loki_env(&receiver);
    let (app, _provider) = spawn_with_provider(&as_refs(&env)).await;
    let client = browser_like_client();
    sign_in(&client, &app).await;
    client.get(app.url("/api/me")).send().await.unwrap();
    let entries = receiver.wait_for_entries(4, Duration::from_secs(10)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut found = None;
    while found.is_none() && std::time::Instant::now() < deadline {
        found = receiver.entries().await.into_iter().find(|entry| {
            entry.metadata.get("route").and_then(Value::as_str) == Some("/api/me")
                && entry.metadata.get("event").and_then(Value::as_str) == Some("http_request")
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let entry = found.unwrap_or_else(|| panic!("no /api/me request in {entries:?}"));
    assert_eq!(entry.metadata["user_id"], "u-1");
    let line = parse(&entry.line);
    assert_eq!(line["status"], 200);
    assert_eq!(line["user_id"], "u-1");
    assert_eq!(line["method"], "GET");
}

#[tokio::test]
async fn readiness_follows_loki_reachability() {
    let loki_port = free_port();
    let loki_url = format!("http://127.0.0.1:{loki_port}");
    let env = [
        ("LOKI_URL", loki_url.as_str()),
        ("LOKI_BATCH_MAX_WAIT_MS", "50"),
    ];
    let app = TestApp::spawn_on(free_port(), &env).await;
    let client = reqwest::Client::new();
    let mut status = 0;
    for _ in 0..100 {
        client.get(app.url("/")).send().await.unwrap();
        status = client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 503, "readiness did not report Loki down");
    assert_eq!(
        client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let _receiver = Receiver::start_on(loki_port, &[]);
    for _ in 0..200 {
        client.get(app.url("/")).send().await.unwrap();
        status = client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "readiness did not recover once Loki was up");
    let metrics = client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("nixtla_loki_entries_sent_total"),
        "{metrics}"
    );
    assert!(metrics.contains("nixtla_loki_retries_total"), "{metrics}");
}
