//! The `healthcheck` subcommand, for Docker's HEALTHCHECK in an image with no curl.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::HealthcheckArgs;

/// Requests the health URL and fails unless it returns 200.
pub async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("failed to build the HTTP client")?;
    let url = args.target();
    let response = client
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("health request to {url} failed"))?;
    if !response.status().is_success() {
        bail!("{url} returned {}", response.status());
    }
    Ok(())
}
