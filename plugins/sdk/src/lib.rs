//! Write agent plugins in Rust.
//!
//! A plugin implements [`Plugin`] (the Job in, the Job out, as `serde_json::Value`) and exports
//! itself with [`export_plugin!`]. The JSON text at the WIT boundary, the bindings and the
//! error mapping are handled here, so a plugin crate holds only its own decision. [`job`] has
//! the common edits (env, labels, annotations, volumes and mounts, resources, a merge patch);
//! [`testing`] runs a plugin natively in unit tests; with the `typed` feature, [`typed`] gives
//! the Job as k8s-openapi's `Job`.
//!
//! ```no_run
//! use agent_plugin_sdk::{Error, Plugin, Request, RequestExt, Value};
//!
//! struct Team;
//! impl Plugin for Team {
//!     fn customize(request: &Request, mut job: Value) -> Result<Value, Error> {
//!         let team = request.config("team").unwrap_or("data");
//!         job["metadata"]["labels"]["team"] = team.into();
//!         Ok(job)
//!     }
//! }
//! agent_plugin_sdk::export_plugin!(Team);
//! ```

pub mod job;
pub mod log;
pub mod quantity;
pub mod testing;
#[cfg(feature = "typed")]
pub mod typed;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "agent_plugin_sdk::bindings",
    });
}

pub use bindings::agent::plugin::types::{AgentSettings, Error, FlowRun, Request, SecretKeyRef};
pub use serde_json::{self, Value, json};

/// One step of the Job-building chain.
pub trait Plugin {
    /// Returns `job` with this plugin's changes, or why it will not or cannot.
    fn customize(request: &Request, job: Value) -> Result<Value, Error>;
}

/// Runs `P` over the JSON text the host sent. Called by the code [`export_plugin!`] writes.
#[doc(hidden)]
pub fn run<P: Plugin>(request: Request, job: String) -> Result<String, Error> {
    let job: Value = serde_json::from_str(&job)
        .map_err(|e| Error::Fault(format!("the Job the host sent is not JSON: {e}")))?;
    let job = P::customize(&request, job)?;
    serde_json::to_string(&job).map_err(|e| Error::Fault(format!("cannot encode the Job: {e}")))
}

/// Exports a [`Plugin`] type as this component's `customizer`.
///
/// Only on wasm: natively (unit tests) the plugin type is used directly, and the component
/// export symbols would not link.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Export;
            impl $crate::bindings::exports::agent::plugin::customizer::Guest for Export {
                fn customize(
                    request: $crate::Request,
                    job: String,
                ) -> Result<String, $crate::Error> {
                    $crate::run::<$plugin>(request, job)
                }
            }
    $crate::bindings::__export_plugin_world!(Export with_types_in $crate::bindings);
        };
    };
}

/// Conveniences over the request.
pub trait RequestExt {
    /// This plugin's setting `key` (`--plugin-config NAME.key=value`), if given.
    fn config(&self, key: &str) -> Option<&str>;
    /// The merged job variables as a JSON object.
    fn job_variables(&self) -> Result<serde_json::Map<String, Value>, Error>;
    /// Setting `key` as a JSON list of objects that each have a string `name` (volumes,
    /// mounts); empty when unset.
    fn config_named_list(&self, key: &str) -> Result<Vec<Value>, Error> {
        let Some(text) = self.config(key) else {
            return Ok(Vec::new());
        };
        match serde_json::from_str(text) {
            Ok(Value::Array(items))
                if items
                    .iter()
                    .all(|i| i.get("name").is_some_and(Value::is_string)) =>
            {
                Ok(items)
            }
            Ok(_) => Err(fault(format!(
                "setting `{key}` must be a JSON list of objects that each have a \"name\""
            ))),
            Err(e) => Err(fault(format!("setting `{key}` is not JSON: {e}"))),
        }
    }
}

impl RequestExt for Request {
    fn config(&self, key: &str) -> Option<&str> {
        self.config
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn job_variables(&self) -> Result<serde_json::Map<String, Value>, Error> {
        match serde_json::from_str(&self.job_variables) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(Error::Fault(format!(
                "job variables must be a JSON object, got {other}"
            ))),
            Err(e) => Err(Error::Fault(format!("job variables are not JSON: {e}"))),
        }
    }
}

/// A plugin fault with a formatted message.
pub fn fault(message: impl Into<String>) -> Error {
    Error::Fault(message.into())
}

/// A policy rejection with a formatted message.
pub fn reject(message: impl Into<String>) -> Error {
    Error::Rejected(message.into())
}
