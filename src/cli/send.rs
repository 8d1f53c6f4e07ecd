//! `hookfan send`: a signed sample event, like Stream's "test webhook" button.

use super::*;

/// `hookfan send`: signs a sample event (or a JSON file) with the first app's secret and POSTs
/// it, like Stream's "test webhook" button.
pub async fn send(config_path: &Path, what: &str, to: Option<&str>) -> anyhow::Result<()> {
    let config = config::load(config_path)?;
    let body = if what.ends_with(".json") || Path::new(what).is_file() {
        std::fs::read(what).with_context(|| format!("cannot read {what}"))?
    } else {
        sample_event(what).into_bytes()
    };
    let app = config
        .apps()
        .first()
        .context("no app configured to sign with")?;
    let url = match to {
        Some(url) => url.to_string(),
        None => default_url(&config)?,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header(HEADER_WEBHOOK_ID, &id)
        .header(HEADER_ATTEMPT, "1")
        .header(HEADER_API_KEY, app.api_key())
        .header(HEADER_SIGNATURE, app.signing_key().sign(&body))
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("cannot POST to {url} (is hookfan running there?)"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("POST {url} (X-Webhook-Id {id}): {status} {}", text.trim());
    if !status.is_success() {
        bail!("hookfan answered {status}");
    }
    Ok(())
}

fn default_url(config: &Config) -> anyhow::Result<String> {
    let Some(mut addr) = config.listen() else {
        bail!("the config has no webhook listener (listen: off, or sources and no apps): give --to URL");
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(format!("http://{addr}/"))
}

/// A small event of the given type, shaped like Stream's chat events.
pub fn sample_event(event_type: &str) -> String {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    serde_json::json!({
        "type": event_type,
        "cid": "messaging:hookfan-test",
        "channel_type": "messaging",
        "channel_id": "hookfan-test",
        "message": {
            "id": uuid::Uuid::new_v4().to_string(),
            "text": "Hello from hookfan send",
            "user": { "id": "hookfan" },
        },
        "user": { "id": "hookfan" },
        "created_at": now,
    })
    .to_string()
}
