//! Fault injection: latency, error statuses and dropped connections for the next N requests or
//! a fraction of them; and a restart that ends every watch (as an API server restart does).

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;

/// What to do to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    Latency { ms: u64 },
    Status { code: u16 },
    Drop,
}

/// A fault and which requests it hits: the next `count` (all if unset), each with probability
/// `fraction` (1 if unset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    #[serde(flatten)]
    pub fault: Fault,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub fraction: Option<f64>,
}

pub enum Injected {
    Latency(Duration),
    Status(u16),
    Drop,
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
    pub fn next(&self) -> Option<Injected> {
        let mut rules = self.rules.lock().unwrap();
        let index = rules
            .iter()
            .position(|rule| rule.fraction.is_none_or(|f| fastrand::f64() < f))?;
        let rule = &mut rules[index];
        let injected = match rule.fault {
            Fault::Latency { ms } => Injected::Latency(Duration::from_millis(ms)),
            Fault::Status { code } => Injected::Status(code),
            Fault::Drop => Injected::Drop,
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
