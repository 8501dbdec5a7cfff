//! How the emulator answers: JSON with the API server's headers, `Status` errors, and the
//! broken answers fault injection asks for.

use crate::status::ApiError;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

pub fn json_response(status: StatusCode, value: &Value, warnings: &[String]) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response();
    for warning in warnings {
        if let Ok(header_value) =
            HeaderValue::from_str(&format!("299 - \"{}\"", warning.replace('"', "\\\"")))
        {
            response.headers_mut().append(header::WARNING, header_value);
        }
    }
    response
}

pub fn error_response(error: &ApiError) -> Response {
    json_response(error.status_code(), &error.to_status(), &[])
}

/// Headers, then a body that breaks: the client sees the connection die mid-answer.
pub fn dropped_connection() -> Response {
    let broken = futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected drop",
        ))
    });
    Response::new(Body::from_stream(broken))
}
