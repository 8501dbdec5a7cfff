//! What one plugin call may use. A call that breaks a limit fails alone, with a message
//! naming the limit and the flag that raises it.

use std::time::Duration;

/// How often the deadline clock ticks; a call running wasm code is stopped within about this
/// of its deadline (a call waiting in a host call is stopped at the deadline itself).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-plugin sandbox limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall time for one call, instantiation and host calls included.
    pub timeout: Duration,
    /// Linear memory, per memory, in bytes.
    pub memory_bytes: usize,
    /// The largest Job (JSON text) the call may return.
    pub output_bytes: usize,
    /// Core instances, tables and memories one call may create.
    pub instances: usize,
    pub tables: usize,
    pub memories: usize,
    /// Elements per table.
    pub table_elements: usize,
}

impl Limits {
    /// Each limit the larger of the two: what an engine running both must allow.
    pub fn max(self, other: &Limits) -> Limits {
        Limits {
            timeout: self.timeout.max(other.timeout),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            output_bytes: self.output_bytes.max(other.output_bytes),
            instances: self.instances.max(other.instances),
            tables: self.tables.max(other.tables),
            memories: self.memories.max(other.memories),
            table_elements: self.table_elements.max(other.table_elements),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(2),
            memory_bytes: 64 << 20,
            // A Job is stored in etcd, whose requests end at 1.5 MiB: no bigger Job can be
            // created, so a bigger answer is a broken plugin.
            output_bytes: 2 << 20,
            instances: 32,
            tables: 32,
            memories: 4,
            table_elements: 100_000,
        }
    }
}
