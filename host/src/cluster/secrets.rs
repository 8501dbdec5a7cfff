//! `--manage-api-key-secret`: the agent writes its own Prefect API key (and auth string) into
//! the Secret flow run pods read it from (`--api-key-secret NAME/KEY`), in every namespace it
//! serves, so the key is never typed twice and never sits in a Job. The Secret carries the
//! agent's label; a Secret of that name that is not the agent's is left alone, with an error.

use crate::job::{AGENT_LABEL, label_value};
use anyhow::bail;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;

/// The key the auth string is stored under, next to the API key.
pub const AUTH_STRING_KEY: &str = "auth-string";

pub struct ManagedSecret<'a> {
    pub name: &'a str,
    pub key: &'a str,
    pub agent: &'a str,
    pub api_key: Option<&'a str>,
    pub auth_string: Option<&'a str>,
}

/// Creates or updates the Secret in each of `namespaces`.
pub async fn ensure(
    client: &kube::Client,
    namespaces: &[String],
    secret: &ManagedSecret<'_>,
) -> anyhow::Result<()> {
    let mut data = BTreeMap::new();
    if let Some(key) = secret.api_key {
        data.insert(secret.key.to_string(), ByteString(key.as_bytes().to_vec()));
    }
    if let Some(auth) = secret.auth_string {
        data.insert(
            AUTH_STRING_KEY.to_string(),
            ByteString(auth.as_bytes().to_vec()),
        );
    }
    if data.is_empty() {
        bail!(
            "--manage-api-key-secret: the agent has no API key or auth string to store (set PREFECT_API_KEY or PREFECT_API_AUTH_STRING)"
        );
    }
    let label = label_value(secret.agent);
    for namespace in namespaces {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let what = format!("Secret {namespace}/{}", secret.name);
        let existing = api.get_opt(secret.name).await.map_err(|e| {
            anyhow::anyhow!(
                "--manage-api-key-secret: cannot read {what}: {}",
                super::describe(&e)
            )
        })?;
        match existing {
            Some(mut found) => {
                let owner = found
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(AGENT_LABEL))
                    .cloned();
                if owner.as_deref() != Some(label.as_str()) {
                    bail!(
                        "--manage-api-key-secret: {what} exists and is not this agent's (label {AGENT_LABEL}={}); remove it, or drop --manage-api-key-secret and keep it up to date yourself",
                        owner.unwrap_or_else(|| "absent".into())
                    );
                }
                if found.data.as_ref() == Some(&data) {
                    continue;
                }
                found.data = Some(data.clone());
                api.replace(secret.name, &PostParams::default(), &found)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "--manage-api-key-secret: cannot update {what}: {}",
                            super::describe(&e)
                        )
                    })?;
                tracing::info!("updated {what} with the agent's API key");
            }
            None => {
                let mut new = Secret::default();
                new.metadata.name = Some(secret.name.to_string());
                new.metadata.labels =
                    Some(BTreeMap::from([(AGENT_LABEL.to_string(), label.clone())]));
                new.data = Some(data.clone());
                api.create(&PostParams::default(), &new)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "--manage-api-key-secret: cannot create {what}: {}",
                            super::describe(&e)
                        )
                    })?;
                tracing::info!("created {what} holding the agent's API key for flow run pods");
            }
        }
    }
    Ok(())
}
