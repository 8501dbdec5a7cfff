//! What changed between two Jobs, as JSON pointers: the smallest subtrees added, removed or
//! changed. `agent render --explain` shows it; the chain uses it to blame invalid fields.

use serde_json::Value;
use std::fmt;

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
        write!(f, "{sign} {}", super::dotted(&self.path))
    }
}

pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    walk(before, after, &mut String::new(), &mut changes);
    changes
}

fn walk(before: &Value, after: &Value, path: &mut String, changes: &mut Vec<Change>) {
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
    fn identical_documents_have_no_changes() {
        let job = json!({"a": [1, {"b": null}]});
        assert!(diff(&job, &job).is_empty());
    }
}
