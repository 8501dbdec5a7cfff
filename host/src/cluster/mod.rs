//! Kubernetes, through kube-rs: creating a run's Job exactly once, and the Secret of the API
//! key flow runs read. (Watching is `crate::watch`'s.) Named `cluster` so that `kube` always
//! means the crate.

pub mod secrets;
mod submit;

pub use submit::{SubmitError, Submitted, Submitter};
