//! A plugin of the previous contract, `agent:plugin@0.1.0` (its WIT is kept in `wit/`, as it
//! was released): labels the Job with the contract it was built against and logs once. The
//! host speaks a newer `0.1.x` and must run it unchanged. Only meaningful on wasm.

#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({ world: "plugin", path: "wit" });

use agent::plugin::log::{Level, log};
use agent::plugin::types::{Error, Request};

struct Old;

impl exports::agent::plugin::customizer::Guest for Old {
    fn customize(_request: Request, job: String) -> Result<String, Error> {
        log(Level::Info, "built against agent:plugin@0.1.0");
        let mut job: serde_json::Value =
            serde_json::from_str(&job).map_err(|e| Error::Fault(e.to_string()))?;
        job["metadata"]["labels"]["contract"] = "0.1.0".into();
        Ok(job.to_string())
    }
}

export!(Old);
