//! Kubernetes, through kube-rs: creating a run's Job exactly once (with the Secret of its env,
//! under --env-secret), and the Secret of the API key flow runs read. (Watching is
//! `crate::watch`'s.) Named `cluster` so that `kube` always means the crate.
mod env_secret;
pub mod errors;
pub mod secrets;
mod submit;

pub use errors::{describe, describe_watch};
pub use submit::{SubmitError, Submitted, Submitter};
