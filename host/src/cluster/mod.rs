//! Kubernetes, through kube-rs: creating a run's Job exactly once (with the Secret of its env,
//! under --env-secret), the Secret of the API key flow runs read, whether the API server can be
//! reached now, and its errors in words. (Watching is `crate::watch`'s.) Named `cluster` so
//! that `kube` always means the crate.
mod env_secret;
pub mod errors;
mod reachability;
pub mod secrets;
mod submit;

pub use errors::{describe, describe_watch, is_transient};
pub use reachability::Reachability;
pub use submit::{SubmitError, Submitted, Submitter};
