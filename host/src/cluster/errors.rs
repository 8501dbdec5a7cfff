//! Kubernetes errors in words for a user: the API server's code, reason and message, or the
//! transport error with its causes. kube-rs' own `Display` of an API error carries a Rust
//! `Debug` dump of the `Status`, which no user should read.

/// `error` in one line.
pub fn describe(error: &kube::Error) -> String {
    if let kube::Error::Api(status) = error {
        return format!("{} {}: {}", status.code, status.reason, status.message);
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A watch's error in one line.
pub fn describe_watch(error: &kube::runtime::watcher::Error) -> String {
    use kube::runtime::watcher::Error;
    match error {
        Error::InitialListFailed(e) => format!("the list failed: {}", describe(e)),
        Error::WatchStartFailed(e) => format!("the watch did not start: {}", describe(e)),
        Error::WatchError(status) => format!(
            "the API server ended it: {} {}: {}",
            status.code, status.reason, status.message
        ),
        Error::WatchFailed(e) => format!("the watch broke: {}", describe(e)),
        Error::NoResourceVersion => error.to_string(),
    }
}

/// Whether trying the same request again may succeed: the API server overloaded or failing
/// (429, 5xx), or no answer at all.
pub fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        // No answer, or one cut short or garbled.
        kube::Error::HyperError(_)
        | kube::Error::Service(_)
        | kube::Error::HttpError(_)
        | kube::Error::SerdeError(_)
        | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_as_code_reason_and_message() {
        let status =
            kube::core::Status::failure("jobs.batch \"x\" not found", "NotFound").with_code(404);
        let text = describe(&kube::Error::Api(Box::new(status)));
        assert_eq!(text, "404 NotFound: jobs.batch \"x\" not found");
        assert!(!text.contains("Status {"));
    }
}
