//! What changed between two Jobs, as JSON pointers: the smallest subtrees added, removed or
//! changed. `agent render --explain` shows it; the chain uses it to blame invalid fields.
//!
//! Written here rather than taken from json-patch's `diff` on purpose: its output grows with
//! every changed list item, and a plugin's answer must not be able to make the agent build
//! millions of paths. Here a long list that changed is one change, and a diff stops at
//! `MAX_CHANGES`.

use serde_json::Value;
use std::fmt;

/// Lists longer than this that changed are reported as one change of the list.
const LONG_LIST: usize = 256;
/// Changes reported at most; past this the whole document is reported as changed.
pub const MAX_CHANGES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Changed,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// JSON pointer; empty for the whole document.
    pub path: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.kind {
            ChangeKind::Added => '+',
            ChangeKind::Changed => '~',
            ChangeKind::Removed => '-',
        };
        write!(f, "{sign} {}", dotted(&self.path))
    }
}

pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    walk(before, after, &mut String::new(), &mut changes);
    if changes.len() > MAX_CHANGES {
        changes = vec![Change {
            kind: ChangeKind::Changed,
            path: String::new(),
        }];
    }
    changes
}

fn walk(before: &Value, after: &Value, path: &mut String, changes: &mut Vec<Change>) {
    if changes.len() > MAX_CHANGES {
        return;
    }
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, old) in a {
                let len = path.len();
                push_segment(path, key);
                match b.get(key) {
                    Some(new) => walk(old, new, path, changes),
                    None => changes.push(Change {
                        kind: ChangeKind::Removed,
                        path: path.clone(),
                    }),
                }
                path.truncate(len);
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                let len = path.len();
                push_segment(path, key);
                changes.push(Change {
                    kind: ChangeKind::Added,
                    path: path.clone(),
                });
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len().max(b.len()) > LONG_LIST => {
            let changed = a != b;
            changes.extend(changed.then(|| Change {
                kind: ChangeKind::Changed,
                path: path.clone(),
            }));
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                match (a.get(i), b.get(i)) {
                    (Some(old), Some(new)) => walk(old, new, path, changes),
                    (Some(_), None) => changes.push(Change {
                        kind: ChangeKind::Removed,
                        path: path.clone(),
                    }),
                    (None, _) => changes.push(Change {
                        kind: ChangeKind::Added,
                        path: path.clone(),
                    }),
                }
                path.truncate(len);
            }
        }
        (a, b) if a != b => changes.push(Change {
            kind: ChangeKind::Changed,
            path: path.clone(),
        }),
        _ => {}
    }
}

fn push_segment(path: &mut String, key: &str) {
    path.push('/');
    path.push_str(&key.replace('~', "~0").replace('/', "~1"));
}

/// `/spec/template/spec/containers/0/name` → `.spec.template.spec.containers[0].name`.
pub fn dotted(pointer: &str) -> String {
    if pointer.is_empty() {
        return ".".into();
    }
    pointer
        .split('/')
        .skip(1)
        .map(|segment| {
            let segment = segment.replace("~1", "/").replace("~0", "~");
            if segment.chars().all(|c| c.is_ascii_digit()) && !segment.is_empty() {
                format!("[{segment}]")
            } else {
                format!(".{segment}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_the_smallest_changed_subtrees() {
        let before = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"containers": [{"image": "i"}]}});
        let after = json!({"metadata": {"name": "b", "labels": {"x": "1", "a/b": "2"}}, "spec": {"containers": []}, "kind": "Job"});
        let shown: Vec<String> = diff(&before, &after)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "~ .metadata.name",
                "+ .metadata.labels.a/b",
                "- .spec.containers[0]",
                "+ .kind"
            ]
        );
    }

    #[test]
    fn long_lists_and_huge_diffs_stay_small() {
        let before = json!({"args": []});
        let after = json!({"args": vec![""; 100_000]});
        let shown: Vec<String> = diff(&before, &after)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["~ .args"]);
        let wide: serde_json::Map<String, Value> =
            (0..20_000).map(|i| (format!("k{i}"), json!(i))).collect();
        let changes = diff(&json!({}), &Value::Object(wide));
        assert_eq!(changes.len(), 1, "the whole document changed");
        assert_eq!(changes[0].path, "");
    }

    #[test]
    fn pointers_read_as_field_paths() {
        assert_eq!(
            dotted("/spec/template/spec/containers/0/name"),
            ".spec.template.spec.containers[0].name"
        );
        assert_eq!(
            dotted("/metadata/labels/prefect.io~1flow-run-id"),
            ".metadata.labels.prefect.io/flow-run-id"
        );
        assert_eq!(dotted(""), ".");
    }

    #[test]
    fn identical_documents_have_no_changes() {
        let job = json!({"a": [1, {"b": null}]});
        assert!(diff(&job, &job).is_empty());
    }
}
