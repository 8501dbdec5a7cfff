//! Plain downloads over HTTP(S), for what the agent reads from URLs: pinned plugins and job
//! templates.

use anyhow::{Context, bail};
use std::time::Duration;

/// Whether `text` is an `http://` or `https://` URL (rather than a path or another scheme).
pub fn is_url(text: &str) -> bool {
    text.starts_with("https://") || text.starts_with("http://")
}

/// The body at `url`; an error names the URL and what went wrong.
pub async fn get(url: &str, timeout: Duration) -> anyhow::Result<Vec<u8>> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot fetch {url}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("{url}: the server answered {status}");
    }
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("{url}: the download broke off"))?;
    Ok(bytes.to_vec())
}
