//! The HTTP API, as kube-apiserver answers it: discovery, then per resource create, get, list,
//! watch, replace, patch, delete and the status and log subresources.

use crate::faults::Injected;
use crate::kinds::{self, Kind};
use crate::response::{dropped_connection, error_response, json_response};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::state::Shared;
use crate::status::ApiError;
use crate::store::{Change, EventType, Key};
use crate::validate::{self, FieldValidation};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

type Params = HashMap<String, String>;

/// The single entry point: faults, discovery, admin, then resources.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_string();
    if let Some(rest) = path.strip_prefix("/emulator/") {
        return crate::admin::handle(&shared, &method, rest, &body);
    }
    *shared
        .requests
        .lock()
        .unwrap()
        .entry(request_kind(&method, &path, &params))
        .or_default() += 1;
    let mut lose_the_answer = false;
    match shared.faults.next(method.as_str(), &path) {
        Some(Injected::Latency(delay)) => tokio::time::sleep(delay).await,
        Some(Injected::LostAnswer) => lose_the_answer = true,
        Some(Injected::Status(code)) => {
            let error = ApiError {
                code,
                reason: reason_for(code),
                message: format!("injected fault: {code}"),
                details: None,
            };
            return error_response(&error);
        }
        Some(Injected::Drop) => return dropped_connection(),
        None => {}
    }
    let response = match discovery(&path) {
        Some(document) => json_response(StatusCode::OK, &document, &[]),
        None => match resource_request(&shared, &method, &path, &params, &headers, &body).await {
            Ok(response) => response,
            Err(error) => error_response(&error),
        },
    };
    // Served, but the client never hears of it.
    if lose_the_answer {
        return dropped_connection();
    }
    response
}

/// `GET jobs (watch)`, `POST jobs`, `DELETE jobs/{name}`, `GET pods/{name}/log`, or the path
/// of a discovery request: what a request did, without its names.
fn request_kind(method: &Method, path: &str, params: &Params) -> String {
    let Ok(target) = parse_path(path) else {
        return format!("{method} {path}");
    };
    let mut kind = format!("{method} {}", target.kind.plural);
    if target.name.is_some() {
        kind.push_str("/{name}");
    }
    if let Some(subresource) = &target.subresource {
        kind.push('/');
        kind.push_str(subresource);
    }
    if params.get("watch").is_some_and(|w| w == "true" || w == "1") {
        kind.push_str(" (watch)");
    }
    kind
}

fn reason_for(code: u16) -> &'static str {
    match code {
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

fn discovery(path: &str) -> Option<Value> {
    match path {
        "/version" => Some(kinds::version()),
        "/api" => Some(kinds::core_versions()),
        "/apis" => Some(kinds::groups()),
        "/api/v1" => kinds::resources("", "v1"),
        "/openapi/v3" => Some(kinds::openapi_v3_root()),
        _ if path.starts_with("/openapi/v3/") => {
            kinds::openapi_v3_group(&path["/openapi/v3/".len()..])
        }
        _ => {
            let rest = path.strip_prefix("/apis/")?;
            let (group, version) = rest.split_once('/')?;
            if version.contains('/') {
                None
            } else {
                kinds::resources(group, version)
            }
        }
    }
}

/// What a resource path names.
struct Target {
    kind: &'static Kind,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Result<Target, ApiError> {
    let not_found = || ApiError {
        code: 404,
        reason: "NotFound",
        message: "the server could not find the requested resource".into(),
        details: None,
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found()),
    };
    // `namespaces/{ns}/{plural}/…` is namespaced; `namespaces` and `namespaces/{name}` are the
    // Namespace objects themselves.
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] => {
            (Some(ns.to_string()), [&[*plural][..], tail].concat())
        }
        other => (None, other.to_vec()),
    };
    let kind =
        kinds::find(group, version, rest.first().ok_or_else(not_found)?).ok_or_else(not_found)?;
    if kind.namespaced != namespace.is_some() && rest.len() > 1 {
        return Err(not_found());
    }
    let subresource = rest.get(2).map(|s| s.to_string());
    if let Some(sub) = &subresource
        && !kind.subresources.contains(&sub.as_str())
    {
        return Err(not_found());
    }
    Ok(Target {
        kind,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource,
    })
}

async fn resource_request(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    params: &Params,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let user = shared.rbac.authenticate(headers)?;
    let json_body = readable_body(method, headers, body)?;
    let body = &json_body;
    let target = parse_path(path)?;
    let watching = params.get("watch").is_some_and(|w| parse_bool(w));
    let verb = match (method, &target.name, &target.subresource) {
        (&Method::GET, None, _) if watching => "watch",
        (&Method::GET, None, _) => "list",
        (&Method::GET, Some(_), _) => "get",
        (&Method::POST, None, _) => "create",
        (&Method::PUT, Some(_), _) => "update",
        (&Method::PATCH, Some(_), _) => "patch",
        (&Method::DELETE, Some(_), _) => "delete",
        _ => return Err(ApiError::method_not_allowed()),
    };
    let resource = match &target.subresource {
        Some(sub) => format!("{}/{sub}", target.kind.plural),
        None => target.kind.plural.to_string(),
    };
    shared.rbac.authorize(
        &user,
        verb,
        target.kind,
        &resource,
        target.namespace.as_deref(),
    )?;

    let kind = target.kind;
    let namespace = target.namespace.as_deref();
    match (verb, target.name.as_deref(), target.subresource.as_deref()) {
        ("list", _, _) => list(shared, kind, namespace, params),
        ("watch", _, _) => watch(shared, kind, namespace, params),
        ("get", Some(name), Some("log")) => pod_log(shared, namespace.unwrap_or(""), name, params),
        ("get", Some(name), _) => get(shared, kind, namespace, name),
        ("create", _, _) => create(shared, kind, namespace, params, body),
        ("update", Some(name), sub) => update(
            shared,
            kind,
            namespace,
            name,
            sub,
            params,
            parse_body(body)?,
        ),
        ("patch", Some(name), sub) => {
            patch(shared, kind, namespace, name, sub, params, headers, body)
        }
        ("delete", Some(name), _) => delete(shared, kind, namespace, name, params, body),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The body as JSON: as sent, or read from protobuf (kubectl creates a few kinds with it). A
/// body in a format the emulator does not read is answered 415, as an API server does.
fn readable_body(method: &Method, headers: &HeaderMap, body: &Bytes) -> Result<Bytes, ApiError> {
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        return Ok(body.clone());
    }
    let Some(media) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(body.clone());
    };
    let media = media.split(';').next().unwrap_or_default().trim();
    if media == "application/vnd.kubernetes.protobuf" && *method == Method::POST {
        return crate::protobuf::decode(body)
            .map(|object| Bytes::from(object.to_string()))
            .map_err(|e| ApiError {
                code: 415,
                reason: "UnsupportedMediaType",
                message: format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({e})"),
                details: None,
            });
    }
    let served = matches!(
        media,
        "application/json"
            | "application/yaml"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json"
            | "application/json-patch+json"
            | "application/apply-patch+yaml"
            | "*/*"
            | ""
    );
    if served {
        return Ok(body.clone());
    }
    Err(ApiError {
        code: 415,
        reason: "UnsupportedMediaType",
        message: format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (not {media})"
        ),
        details: None,
    })
}

/// Booleans as the API server (Go's strconv.ParseBool) reads them: Python clients send `True`.
fn parse_bool(text: &str) -> bool {
    matches!(text, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request was in an unknown format: {e}"
        ))
    })
}

fn namespace_key(kind: &Kind, namespace: Option<&str>) -> String {
    if kind.namespaced {
        namespace.unwrap_or("").to_string()
    } else {
        String::new()
    }
}

fn get(
    shared: &Shared,
    kind: &'static Kind,
    namespace: Option<&str>,
    name: &str,
) -> Result<Response, ApiError> {
    let store = shared.store.lock().unwrap();
    let object = store
        .get(kind, &namespace_key(kind, namespace), name)
        .ok_or_else(|| ApiError::not_found(&kind.qualified(), name))?;
    Ok(json_response(StatusCode::OK, object, &[]))
}

fn selectors(kind: &Kind, params: &Params) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(
        params
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or(""),
    )
    .map_err(ApiError::bad_request)?;
    // The fields the API server indexes per kind.
    let supported: &[&str] = match (kind.group, kind.plural) {
        ("", "pods") => &[
            "metadata.name",
            "metadata.namespace",
            "status.phase",
            "spec.nodeName",
            "spec.restartPolicy",
        ],
        ("", "events") => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        _ => &["metadata.name", "metadata.namespace"],
    };
    let fields = FieldSelector::parse(
        params
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or(""),
        supported,
    )
    .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn list(
    shared: &Shared,
    kind: &'static Kind,
    namespace: Option<&str>,
    params: &Params,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(kind, params)?;
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let after: Option<Key> = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => Some(decode_continue(token)?),
        None => None,
    };
    let store = shared.store.lock().unwrap();
    let mut matching = store
        .list(kind, namespace.filter(|_| kind.namespaced))
        .filter(|(key, _)| {
            after
                .as_ref()
                .is_none_or(|a| (&key.1, &key.2) > (&a.1, &a.2))
        })
        .filter(|(_, object)| labels.matches(object) && fields.matches(object));
    let items: Vec<Value> = matching
        .by_ref()
        .take(limit)
        .map(|(_, o)| o.clone())
        .collect();
    let remaining = matching.count();
    let mut metadata = json!({"resourceVersion": store.resource_version().to_string()});
    if remaining > 0
        && let Some(last) = items.last()
    {
        let key = crate::store::key_of(kind, last);
        metadata["continue"] = json!(encode_continue(&key));
        metadata["remainingItemCount"] = json!(remaining);
    }
    let list = json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(), "metadata": metadata, "items": items});
    Ok(json_response(StatusCode::OK, &list, &[]))
}

fn encode_continue(key: &Key) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!([key.1, key.2]).to_string())
}

fn decode_continue(token: &str) -> Result<Key, ApiError> {
    use base64::Engine;
    let bad = || ApiError::bad_request("continue key is not valid: illegal base64 data");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let parts: (String, String) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok(("", parts.0, parts.1))
}

/// A watch: `ADDED` for what exists (no or `0` resourceVersion) or the changes after the given
/// version, then every change, as newline-delimited JSON; bookmarks when asked; an `ERROR` event
/// with a 410 Status when the version is older than the history kept.
fn watch(
    shared: &Arc<Shared>,
    kind: &'static Kind,
    namespace: Option<&str>,
    params: &Params,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(kind, params)?;
    let namespace = namespace.filter(|_| kind.namespaced).map(str::to_string);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| parse_bool(b));
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let since: Option<u64> =
        match params.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(version) => Some(version.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version: {version}"))
            })?),
        };
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(1024);
    let mut changes;
    let mut last_sent;
    let mut backlog: Vec<Value> = Vec::new();
    {
        let store = shared.store.lock().unwrap();
        changes = store.subscribe();
        last_sent = store.resource_version();
        match since {
            None => {
                for (_, object) in store.list(kind, namespace.as_deref()) {
                    if labels.matches(object) && fields.matches(object) {
                        backlog.push(json!({"type": "ADDED", "object": object}));
                    }
                }
            }
            Some(version) if version < store.compacted_to() => {
                let gone = ApiError::gone(format!(
                    "too old resource version: {version} ({})",
                    store.compacted_to()
                ));
                backlog.push(json!({"type": "ERROR", "object": gone.to_status()}));
            }
            Some(version) => {
                for change in store.history_after(version) {
                    if let Some(event) =
                        event_for(&change, kind, namespace.as_deref(), &labels, &fields)
                    {
                        backlog.push(event);
                    }
                }
            }
        }
    }
    let mut restarts = shared.restarts.subscribe();
    let ends_with_error = backlog.last().is_some_and(|e| e["type"] == "ERROR");
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    tokio::spawn(async move {
        for event in backlog {
            if sender.send(Ok(line(&event))).await.is_err() {
                return;
            }
        }
        if ends_with_error {
            return;
        }
        let mut bookmark_timer = tokio::time::interval(Duration::from_millis(500));
        loop {
            let until_deadline = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = until_deadline => return,
                _ = restarts.changed() => return,
                _ = bookmark_timer.tick(), if bookmarks => {
                    let bookmark = json!({"type": "BOOKMARK", "object": {"kind": kind.kind, "apiVersion": kind.api_version(),
                        "metadata": {"resourceVersion": last_sent.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}});
                    if sender.send(Ok(line(&bookmark))).await.is_err() { return; }
                }
                received = changes.recv() => match received {
                    Ok(change) => {
                        if change.resource_version <= last_sent { continue; }
                        last_sent = change.resource_version;
                        if let Some(event) = event_for(&change, kind, namespace.as_deref(), &labels, &fields)
                            && sender.send(Ok(line(&event))).await.is_err()
                        {
                            return;
                        }
                    }
                    // Fell behind the broadcast: end the watch, the client resumes from last_sent.
                    Err(_) => return,
                },
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn line(event: &Value) -> Bytes {
    let mut text = event.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// The watch event a change means for this watch, if any: a modification that moves an object
/// out of the selection is a DELETED, into it an ADDED.
fn event_for(
    change: &Change,
    kind: &Kind,
    namespace: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Option<Value> {
    if change.kind != kind.key() || namespace.is_some_and(|ns| ns != change.namespace) {
        return None;
    }
    let selected = |o: &Value| labels.matches(o) && fields.matches(o);
    let now = selected(&change.object);
    let before = change.previous.as_ref().map(selected);
    let event = match (change.event, before, now) {
        (EventType::Modified, Some(true), false) => EventType::Deleted,
        (EventType::Modified, Some(false), true) => EventType::Added,
        (_, _, false) => return None,
        (event, _, true) => event,
    };
    Some(json!({"type": event.as_str(), "object": change.object}))
}

fn create(
    shared: &Shared,
    kind: &'static Kind,
    namespace: Option<&str>,
    params: &Params,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let mut object = parse_body(body)?;
    let mode = FieldValidation::parse(params.get("fieldValidation").map(String::as_str))?;
    check_type(kind, &object)?;
    if kind.namespaced {
        let path_namespace = namespace.unwrap_or("");
        match object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
        {
            Some(ns) if !ns.is_empty() && ns != path_namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => object["metadata"]["namespace"] = json!(path_namespace),
        }
    }
    let dry_run = params.get("dryRun").is_some_and(|d| d == "All");
    let mut store = shared.store.lock().unwrap();
    if kind.namespaced
        && store
            .get(crate::state::namespaces(), "", namespace.unwrap_or(""))
            .is_none()
    {
        return Err(ApiError::not_found("namespaces", namespace.unwrap_or("")));
    }
    let generated = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if generated
        && let Some(prefix) = object
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
            .map(str::to_string)
    {
        object["metadata"]["name"] = json!(generate_name(&prefix));
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let warnings = validate::admit(kind, &mut object, mode, None)?;
    if store
        .get(kind, &namespace_key(kind, namespace), &name)
        .is_some()
    {
        return Err(ApiError::already_exists(&kind.qualified(), &name));
    }
    stamp_new(kind, &mut object);
    if dry_run {
        return Ok(json_response(StatusCode::CREATED, &object, &warnings));
    }
    let stored = store.put(kind, object);
    drop(store);
    shared.wake_simulation();
    Ok(json_response(StatusCode::CREATED, &stored, &warnings))
}

fn check_type(kind: &Kind, object: &Value) -> Result<(), ApiError> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let object_kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != kind.api_version() || object_kind != kind.kind {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}) or kind {object_kind:?} is not {:?}",
            kind.api_version(),
            kind.kind
        )));
    }
    if !object.get("metadata").is_some_and(Value::is_object) && object.get("metadata").is_some() {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    Ok(())
}

/// Five characters from the API server's alphabet, as `generateName` gets.
fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let prefix: String = prefix.chars().take(58).collect();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// uid, creationTimestamp, generation, empty status and the kind's defaults.
fn stamp_new(kind: &Kind, object: &mut Value) {
    object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    object["metadata"]["creationTimestamp"] = json!(crate::state::now());
    if object.get("spec").is_some() {
        object["metadata"]["generation"] = json!(1);
    }
    if matches!(kind.plural, "jobs" | "pods") {
        object["status"] = json!({});
    }
    if kind.plural == "jobs" {
        validate::default_job(object);
    }
    if kind.plural == "pods" && object.pointer("/status/phase").is_none() {
        object["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
    }
    if kind.plural == "namespaces" {
        object["status"] = json!({"phase": "Active"});
    }
    merge_string_data(kind, object);
}

/// As the API server does: a Secret's write-only `stringData` is merged into `data`, base64.
fn merge_string_data(kind: &Kind, object: &mut Value) {
    if kind.plural != "secrets" {
        return;
    }
    let Some(Value::Object(strings)) = object.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    if !object.get("data").is_some_and(Value::is_object) {
        object["data"] = json!({});
    }
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default().to_string();
        object["data"][key] = json!(base64::engine::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            text
        ));
    }
}

fn update(
    shared: &Shared,
    kind: &'static Kind,
    namespace: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    params: &Params,
    mut object: Value,
) -> Result<Response, ApiError> {
    merge_string_data(kind, &mut object);
    let mode = FieldValidation::parse(params.get("fieldValidation").map(String::as_str))?;
    check_type(kind, &object)?;
    let mut store = shared.store.lock().unwrap();
    let current = store
        .get(kind, &namespace_key(kind, namespace), name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&kind.qualified(), name))?;
    if object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_some_and(|n| n != name)
    {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    if let Some(version) = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        && version
            != current["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
    {
        return Err(ApiError::conflict(
            &kind.qualified(),
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    let has_status = kind.subresources.contains(&"status");
    let merged = match subresource {
        // Through /status only the status changes.
        Some("status") => {
            let mut merged = current.clone();
            merged["status"] = object.get("status").cloned().unwrap_or_else(|| json!({}));
            merged
        }
        _ => {
            for field in [
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "namespace",
            ] {
                match current["metadata"].get(field) {
                    Some(value) => object["metadata"][field] = value.clone(),
                    None => {
                        if let Some(map) = object["metadata"].as_object_mut() {
                            map.remove(field);
                        }
                    }
                }
            }
            object["metadata"]["name"] = json!(name);
            if has_status {
                object["status"] = current.get("status").cloned().unwrap_or_else(|| json!({}));
            }
            if object.get("spec") != current.get("spec") {
                let generation = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                object["metadata"]["generation"] = json!(generation);
            }
            object
        }
    };
    let mut merged = merged;
    let warnings = validate::admit(kind, &mut merged, mode, Some(&current))?;
    if params.get("dryRun").is_some_and(|d| d == "All") {
        return Ok(json_response(StatusCode::OK, &merged, &warnings));
    }
    let finished_deleting = merged["metadata"].get("deletionTimestamp").is_some()
        && merged["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
    let stored = if finished_deleting {
        store
            .remove(kind, &namespace_key(kind, namespace), name)
            .unwrap_or(merged)
    } else {
        store.put(kind, merged)
    };
    drop(store);
    shared.wake_simulation();
    Ok(json_response(StatusCode::OK, &stored, &warnings))
}

#[allow(clippy::too_many_arguments)]
fn patch(
    shared: &Shared,
    kind: &'static Kind,
    namespace: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    params: &Params,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let current = {
        let store = shared.store.lock().unwrap();
        store
            .get(kind, &namespace_key(kind, namespace), name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&kind.qualified(), name))?
    };
    let mut patched = current.clone();
    match content_type.as_str() {
        "application/merge-patch+json" => json_patch::merge(&mut patched, &parse_body(body)?),
        "application/strategic-merge-patch+json" => {
            strategic_merge(&mut patched, &parse_body(body)?)
        }
        "application/json-patch+json" => {
            let operations: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut patched, &operations).map_err(|e| ApiError {
                code: 422,
                reason: "Invalid",
                message: format!(
                    "the server rejected our request due to an error in our request: {e}"
                ),
                details: None,
            })?;
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    // A patch checks the version only if it names one.
    if patched.pointer("/metadata/resourceVersion") == current.pointer("/metadata/resourceVersion")
        && let Some(map) = patched["metadata"].as_object_mut()
    {
        map.remove("resourceVersion");
    }
    update(shared, kind, namespace, name, subresource, params, patched)
}

/// A merge patch where lists of objects with a `name` merge item by item (containers, env,
/// volumes, volumeMounts...), as strategic merge does for the fields the agent uses; `null`
/// deletes.
fn strategic_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else if let Some(existing) = target.get_mut(key) {
                    strategic_merge(existing, value);
                } else {
                    target.insert(key.clone(), value.clone());
                }
            }
        }
        (Value::Array(target), Value::Array(patch))
            if patch
                .iter()
                .chain(target.iter())
                .all(|item| item.get("name").is_some_and(Value::is_string)) =>
        {
            for item in patch {
                match target
                    .iter_mut()
                    .find(|existing| existing.get("name") == item.get("name"))
                {
                    Some(existing) => strategic_merge(existing, item),
                    None => target.push(item.clone()),
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn delete(
    shared: &Shared,
    kind: &'static Kind,
    namespace: Option<&str>,
    name: &str,
    params: &Params,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let options: Value = if body.is_empty() {
        json!({})
    } else {
        parse_body(body)?
    };
    let propagation = options
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(params.get("propagationPolicy").map(String::as_str))
        // batch/v1 Jobs orphan their pods unless told otherwise, for compatibility.
        .unwrap_or(if kind.plural == "jobs" {
            "Orphan"
        } else {
            "Background"
        })
        .to_string();
    if !matches!(propagation.as_str(), "Orphan" | "Background" | "Foreground") {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy {propagation:?} is not one of Orphan, Background, Foreground"
        )));
    }
    let grace = options
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| {
            params
                .get("gracePeriodSeconds")
                .and_then(|g| g.parse().ok())
        });
    let dry_run = params.get("dryRun").is_some_and(|d| d == "All")
        || options
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "All"));
    let mut store = shared.store.lock().unwrap();
    let ns = namespace_key(kind, namespace);
    let current = store
        .get(kind, &ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&kind.qualified(), name))?;
    let preconditions = options.get("preconditions");
    for (field, pointer) in [
        ("uid", "/metadata/uid"),
        ("resourceVersion", "/metadata/resourceVersion"),
    ] {
        if let Some(expected) = preconditions
            .and_then(|p| p.get(field))
            .and_then(Value::as_str)
            && current.pointer(pointer).and_then(Value::as_str) != Some(expected)
        {
            let actual = current
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            let why = format!(
                "Precondition failed: {field} in precondition: {expected}, {field} in object meta: {actual}"
            );
            return Err(ApiError::conflict(&kind.qualified(), name, &why));
        }
    }
    if dry_run {
        return Ok(json_response(StatusCode::OK, &current, &[]));
    }
    let response = crate::state::delete_object(&mut store, kind, &ns, name, &propagation, grace);
    drop(store);
    shared.wake_simulation();
    Ok(match response {
        Some(object) => json_response(
            if object["metadata"].get("deletionTimestamp").is_some() && propagation == "Foreground"
            {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            },
            &object,
            &[],
        ),
        None => json_response(
            StatusCode::OK,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "kind": kind.plural, "uid": current["metadata"]["uid"]}}),
            &[],
        ),
    })
}

fn pod_log(
    shared: &Shared,
    namespace: &str,
    name: &str,
    params: &Params,
) -> Result<Response, ApiError> {
    let text = shared.pod_log(namespace, name)?;
    let text = match params
        .get("tailLines")
        .and_then(|t| t.parse::<usize>().ok())
    {
        Some(tail) => {
            let lines: Vec<&str> = text.lines().collect();
            let mut out = lines[lines.len().saturating_sub(tail)..].join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            out
        }
        None => text,
    };
    Ok(([(header::CONTENT_TYPE, "text/plain")], text).into_response())
}
