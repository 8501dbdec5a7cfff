//! Prefect 3: the REST client the agent uses (the calls a Prefect worker makes), the shapes of
//! the API objects it reads, the placeholders it resolves and the batcher of runs' log lines.

pub mod client;
pub mod logs;
pub mod models;
pub mod placeholders;

pub use client::{PrefectClient, PrefectError, Proposal, ProposalStatus};
pub use logs::RunLogs;
