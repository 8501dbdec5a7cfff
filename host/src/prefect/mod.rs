//! Prefect 3: the REST client the agent uses (the calls a Prefect worker makes), the shapes of
//! the API objects it reads, the placeholders it resolves and the batcher of runs' log lines.

pub mod batch;
pub mod client;
pub mod emit;
pub mod event_stream;
pub mod labels;
pub mod logs;
pub mod models;
pub mod placeholders;

pub use client::{ClientOptions, PrefectClient, PrefectError, Proposal, ProposalStatus};
pub use labels::RunLabels;
pub use logs::RunLogs;
