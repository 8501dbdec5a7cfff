//! Kubernetes, through kube-rs: creating a run's Job exactly once. (Watching Jobs and pods
//! comes with the lifecycle work.) Named `cluster` so that `kube` always means the crate.

mod submit;

pub use submit::{SubmitError, Submitted, Submitter};
