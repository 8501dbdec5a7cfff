//! Plugins given as `https://…/naming.wasm#sha256=HEX`: fetched once, checked against the pin,
//! kept on disk under their hash, so a restarted agent (or a pod with a cache volume) does
//! not fetch again. The pin is required: it is what makes the download trustworthy, whatever
//! the transport.

use super::spec::PluginSpec;
use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether the spec names a URL rather than a file.
pub fn is_remote(spec: &PluginSpec) -> bool {
    let text = spec.path.to_string_lossy();
    crate::http::is_url(&text)
}

/// Replaces every remote plugin of `specs` by its downloaded copy in `dir`.
pub async fn fetch_remote(specs: &mut [PluginSpec], dir: &Path) -> anyhow::Result<()> {
    for spec in specs.iter_mut().filter(|s| is_remote(s)) {
        let url = spec.path.to_string_lossy().into_owned();
        let Some(sha256) = spec.sha256.clone() else {
            bail!(
                "--plugin {url}: a plugin fetched from a URL must be pinned; add #sha256=HEX (the file's sha256sum)"
            );
        };
        spec.path = fetch(&url, &sha256, dir)
            .await
            .with_context(|| format!("--plugin {url}"))?;
    }
    Ok(())
}

/// The file at `url`, from `dir` when it was fetched before.
async fn fetch(url: &str, sha256: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{sha256}.wasm"));
    if std::fs::read(&path).is_ok_and(|bytes| hex::encode(Sha256::digest(&bytes)) == sha256) {
        tracing::debug!(url, path = %path.display(), "plugin already downloaded");
        return Ok(path);
    }
    tracing::info!(url, "downloading plugin");
    let bytes = crate::http::get(url, Duration::from_secs(60)).await?;
    let found = hex::encode(Sha256::digest(&bytes));
    if found != sha256 {
        bail!(
            "the downloaded file has sha256 {found}, not the pinned {sha256}: the file changed or the pin is wrong"
        );
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the download directory {}", dir.display()))?;
    // Written aside and renamed, so a half-written file is never taken for the plugin.
    let partial = dir.join(format!("{sha256}.wasm.partial-{}", std::process::id()));
    std::fs::write(&partial, &bytes)
        .and_then(|()| std::fs::rename(&partial, &path))
        .with_context(|| format!("cannot keep the download in {}", dir.display()))?;
    Ok(path)
}
