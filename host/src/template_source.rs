//! Where `--job-template` comes from: a local file, an `https://` URL, or an object store
//! (`s3://`, `gs://`, `az://`) read with object_store and its standard credential chains
//! (`AWS_*`, `GOOGLE_*`, `AZURE_*` environment, instance metadata). YAML or JSON.

use anyhow::{Context, bail};
use object_store::ObjectStore;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Reads and parses the template at `location`, naming it in every error.
pub async fn read(location: &str) -> anyhow::Result<Value> {
    let text = if crate::http::is_url(location) {
        let bytes = crate::http::get(location, Duration::from_secs(30)).await?;
        String::from_utf8(bytes).with_context(|| format!("{location} is not UTF-8 text"))?
    } else if let Some((scheme, rest)) = location.split_once("://") {
        fetch_object(scheme, rest, location).await?
    } else {
        return crate::document::read_document(Path::new(location));
    };
    crate::document::parse_document(&text, location)
}

/// `s3://bucket/key`, `gs://bucket/key`, `az://container/key`.
async fn fetch_object(scheme: &str, rest: &str, location: &str) -> anyhow::Result<String> {
    let Some((bucket, key)) = rest
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
    else {
        bail!("{location}: expected {scheme}://BUCKET/PATH");
    };
    let store: Box<dyn ObjectStore> = match scheme {
        "s3" => Box::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()?,
        ),
        "gs" => Box::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .build()?,
        ),
        "az" => Box::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .build()?,
        ),
        other => bail!(
            "{location}: unknown scheme {other:?}; use a file path, https://, s3://, gs:// or az://"
        ),
    };
    let bytes = store
        .get(&object_store::path::Path::from(key))
        .await
        .with_context(|| format!("cannot read {location} (credentials come from the environment, as the cloud's own tools read them)"))?
        .bytes()
        .await
        .with_context(|| format!("{location}: the download broke off"))?;
    String::from_utf8(bytes.to_vec()).with_context(|| format!("{location} is not UTF-8 text"))
}
