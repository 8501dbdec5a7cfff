//! Prefect 3: the REST client the agent uses (the calls a Prefect worker makes) and the shapes
//! of the API objects it reads.

pub mod client;
pub mod models;
pub mod placeholders;

pub use client::{PrefectClient, PrefectError, Proposal, ProposalStatus};
