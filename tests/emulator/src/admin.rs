//! `/emulator/…`: control of a running emulator over HTTP, for the standalone binary and for
//! clients in other languages. In-process tests use the `Emulator` methods instead.
//!
//! - `POST /emulator/faults` a `FaultRule` (JSON); `DELETE /emulator/faults` clears them
//! - `POST /emulator/restart` ends every watch
//! - `POST /emulator/compact` forgets watch history (older resource versions get 410)
//! - `POST /emulator/end-runs` ends every running container now, as its script says
//! - `PUT /emulator/node` a `Node` (JSON): capacity, labels, taints
//! - `GET /emulator/stats` object count and resource version

use crate::config::Node;
use crate::faults::FaultRule;
use crate::response::{error_response, json_response};
use crate::state::Shared;
use crate::status::ApiError;
use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::json;

pub fn handle(shared: &Shared, method: &Method, path: &str, body: &Bytes) -> Response {
    let bad = |e: serde_json::Error| error_response(&ApiError::bad_request(e.to_string()));
    match (method, path) {
        (&Method::POST, "faults") => match FaultRule::from_json(body) {
            Ok(rule) => {
                shared.faults.add(rule);
                ok()
            }
            Err(e) => error_response(&ApiError::bad_request(format!("not a fault rule: {e}"))),
        },
        (&Method::DELETE, "faults") => {
            shared.faults.clear();
            ok()
        }
        (&Method::POST, "restart") => {
            shared.restart_watches();
            ok()
        }
        (&Method::POST, "compact") => {
            shared.store.lock().unwrap().compact();
            ok()
        }
        (&Method::POST, "end-runs") => {
            shared.end_runs();
            ok()
        }
        (&Method::PUT, "node") => match serde_json::from_slice::<Node>(body) {
            Ok(node) => {
                shared.set_node(node);
                ok()
            }
            Err(e) => bad(e),
        },
        (&Method::GET, "stats") => {
            let store = shared.store.lock().unwrap();
            json_response(
                StatusCode::OK,
                &json!({"objects": store.len(), "resourceVersion": store.resource_version()}),
                &[],
            )
        }
        (&Method::GET, "requests") => json_response(
            StatusCode::OK,
            &json!(*shared.requests.lock().unwrap()),
            &[],
        ),
        (&Method::DELETE, "requests") => {
            shared.requests.lock().unwrap().clear();
            ok()
        }
        _ => error_response(&ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("no emulator endpoint {method} /emulator/{path}"),
            details: None,
        }),
    }
}

fn ok() -> Response {
    json_response(StatusCode::OK, &json!({"status": "Success"}), &[])
}
