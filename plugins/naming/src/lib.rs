//! Prefixes the Job name: `prefix=etl` turns `crimson-beaver-k3x9a2b1` into
//! `etl-crimson-beaver-k3x9a2b1`. The claim suffix at the end is always kept, so names stay
//! unique and deterministic; the middle is shortened to fit 63 characters.

use agent_plugin_sdk::{Error, Plugin, Request, RequestExt, Value, fault, job, json};

/// Job names must be DNS labels: the Job controller copies them into a pod label.
const MAX_NAME: usize = 63;

pub struct Naming;

impl Plugin for Naming {
    fn customize(request: &Request, mut job: Value) -> Result<Value, Error> {
        let prefix = request.config("prefix").ok_or_else(|| {
            fault("missing setting `prefix` (give --plugin-config naming.prefix=VALUE)")
        })?;
        if !is_dns_label_start(prefix) {
            return Err(fault(format!(
                "setting `prefix` = {prefix:?} must be lowercase letters, digits and '-', start with a letter or digit, and be at most 30 characters"
            )));
        }
        let metadata = job::object_at(&mut job, &["metadata"])?;
        let name = metadata
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("job")
            .to_string();
        metadata.insert("name".into(), json!(prefixed(prefix, &name)));
        Ok(job)
    }
}

agent_plugin_sdk::export_plugin!(Naming);

fn is_dns_label_start(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 30
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !prefix.starts_with('-')
}

fn prefixed(prefix: &str, name: &str) -> String {
    let prefix = prefix.trim_end_matches('-');
    if name.starts_with(&format!("{prefix}-")) {
        return name.to_string();
    }
    let room = MAX_NAME - prefix.len() - 1;
    let tail = &name[name.len().saturating_sub(room)..];
    format!("{prefix}-{}", tail.trim_start_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::prefixed;

    #[test]
    fn prefixes_and_keeps_the_suffix_within_63() {
        assert_eq!(
            prefixed("etl", "crimson-beaver-k3x9"),
            "etl-crimson-beaver-k3x9"
        );
        let long = format!("{}-k3x9a2b1", "a".repeat(60));
        let named = prefixed("etl", &long);
        assert_eq!(named.len(), 63);
        assert!(named.starts_with("etl-") && named.ends_with("-k3x9a2b1"));
    }

    #[test]
    fn an_already_prefixed_name_is_left_alone() {
        assert_eq!(prefixed("etl", "etl-x"), "etl-x");
    }
}
