//! Fault injection: latency, error statuses, dropped connections and lost answers, for the
//! next N matching requests or a fraction of them; and a restart that ends every watch (as an
//! API server restart does).
//!
//! Over HTTP (`POST /emulator/faults`) a rule is JSON:
//! `{"fault": "status", "code": 500, "fraction": 0.2, "method": "POST", "path": "/jobs"}`.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;

/// What to do to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// Answer after this long.
    Latency { ms: u64 },
    /// Answer with this status (and a `Status` body) instead of serving the request.
    Status { code: u16 },
    /// Close the connection mid-answer, without serving the request.
    Drop,
    /// Serve the request (a create creates), then close the connection before the answer: the
    /// client cannot tell whether it happened.
    LostAnswer,
}

/// A fault and which requests it hits: those matching `method` and `path` (all if unset),
/// the next `count` of them (all if unset), each with probability `fraction` (1 if unset).
///
/// Unknown fields are refused by hand (`deny_unknown_fields` does not work with `flatten`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    #[serde(flatten)]
    pub fault: Fault,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub fraction: Option<f64>,
    /// An HTTP method (`POST`); all methods when unset.
    #[serde(default)]
    pub method: Option<String>,
    /// A part of the path (`/jobs`); all paths when unset.
    #[serde(default)]
    pub path: Option<String>,
}

impl FaultRule {
    /// A rule for `fault` on every request.
    pub fn always(fault: Fault) -> Self {
        FaultRule {
            fault,
            count: None,
            fraction: None,
            method: None,
            path: None,
        }
    }

    /// A rule from its JSON, refusing fields it does not know (a misspelt `fraction` must not
    /// turn a 20% fault into a 100% one).
    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        const KNOWN: &[&str] = &["fault", "ms", "code", "count", "fraction", "method", "path"];
        if let Some(object) = value.as_object()
            && let Some(unknown) = object.keys().find(|k| !KNOWN.contains(&k.as_str()))
        {
            return Err(format!(
                "unknown field `{unknown}`; a rule has {}",
                KNOWN.join(", ")
            ));
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path.as_deref().is_none_or(|p| path.contains(p))
    }
}

pub enum Injected {
    Latency(Duration),
    Status(u16),
    Drop,
    LostAnswer,
}

#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
}

impl Faults {
    pub fn add(&self, rule: FaultRule) {
        self.rules.lock().unwrap().push(rule);
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// The fault for the request being served, if one applies; uses up a count.
    pub fn next(&self, method: &str, path: &str) -> Option<Injected> {
        let mut rules = self.rules.lock().unwrap();
        let index = rules.iter().position(|rule| {
            rule.matches(method, path) && rule.fraction.is_none_or(|f| fastrand::f64() < f)
        })?;
        let rule = &mut rules[index];
        let injected = match rule.fault {
            Fault::Latency { ms } => Injected::Latency(Duration::from_millis(ms)),
            Fault::Status { code } => Injected::Status(code),
            Fault::Drop => Injected::Drop,
            Fault::LostAnswer => Injected::LostAnswer,
        };
        if let Some(count) = &mut rule.count {
            *count -= 1;
            if *count == 0 {
                rules.remove(index);
            }
        }
        Some(injected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_from_json_and_refuse_unknown_fields() {
        let rule = FaultRule::from_json(
            br#"{"fault": "status", "code": 500, "fraction": 0.2, "method": "POST", "path": "/jobs"}"#,
        )
        .unwrap();
        assert_eq!(rule.fault, Fault::Status { code: 500 });
        assert_eq!(rule.fraction, Some(0.2));
        assert!(rule.matches("post", "/apis/batch/v1/namespaces/default/jobs"));
        assert!(!rule.matches("GET", "/apis/batch/v1/namespaces/default/jobs"));
        let lost = FaultRule::from_json(br#"{"fault": "lost-answer", "count": 1}"#).unwrap();
        assert_eq!(lost.fault, Fault::LostAnswer);
        let error = FaultRule::from_json(br#"{"fault": "drop", "fracton": 0.2}"#).unwrap_err();
        assert!(error.contains("unknown field `fracton`"), "{error}");
    }
}
