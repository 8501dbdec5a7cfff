//! The Job as k8s-openapi's typed `Job` (feature `typed`): implement [`TypedPlugin`], export
//! with `export_plugin!(Typed<YourType>)`.
//!
//! ```no_run
//! use agent_plugin_sdk::typed::{Job, TypedPlugin};
//! use agent_plugin_sdk::{Error, Request};
//!
//! struct Deadline;
//! impl TypedPlugin for Deadline {
//!     fn customize(_request: &Request, mut job: Job) -> Result<Job, Error> {
//!         job.spec.get_or_insert_default().active_deadline_seconds = Some(3600);
//!         Ok(job)
//!     }
//! }
//! agent_plugin_sdk::export_plugin!(agent_plugin_sdk::typed::Typed<Deadline>);
//! ```
//!
//! The price of types: fields the k8s-openapi version does not know (a newer Kubernetes'
//! fields) are dropped on the way through, and the component is larger. Plugins that only
//! touch a few paths are better off with [`crate::job`] on JSON.

pub use k8s_openapi::api::batch::v1::Job;

use crate::{Error, Plugin, Request, Value, fault};
use std::marker::PhantomData;

/// A plugin over the typed Job.
pub trait TypedPlugin {
    fn customize(request: &Request, job: Job) -> Result<Job, Error>;
}

/// Makes a [`TypedPlugin`] a [`Plugin`]: the JSON Job becomes a `Job` and back.
pub struct Typed<P>(PhantomData<P>);

impl<P: TypedPlugin> Plugin for Typed<P> {
    fn customize(request: &Request, job: Value) -> Result<Value, Error> {
        let job: Job = serde_json::from_value(job)
            .map_err(|e| fault(format!("the Job is not a batch/v1 Job: {e}")))?;
        let job = P::customize(request, job)?;
        serde_json::to_value(job).map_err(|e| fault(format!("cannot encode the Job: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use serde_json::json;

    struct Deadline;
    impl TypedPlugin for Deadline {
        fn customize(_request: &Request, mut job: Job) -> Result<Job, Error> {
            job.spec.get_or_insert_default().active_deadline_seconds = Some(3600);
            Ok(job)
        }
    }

    #[test]
    fn a_typed_plugin_edits_the_job_through_k8s_openapi() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "a"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let out = testing::customize::<Typed<Deadline>>(&testing::request(&[]), job).unwrap();
        assert_eq!(out["spec"]["activeDeadlineSeconds"], 3600);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["image"],
            "i"
        );
        let bad = testing::customize::<Typed<Deadline>>(&testing::request(&[]), json!({"spec": 1}));
        assert!(matches!(bad, Err(Error::Fault(detail)) if detail.contains("not a batch/v1 Job")));
    }
}
