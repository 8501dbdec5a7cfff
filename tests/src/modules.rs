//! Module dependencies of a crate, read from its sources: which module `use`s (or names)
//! which, and the cycles among them. A cycle is counted between siblings: `a::x` naming
//! `b::y` makes `a` depend on `b`; a module naming its own ancestor or descendant is
//! containment, not dependency. Test modules (`#[cfg(test)] mod tests`) are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module's path from the crate root (`["watch", "act"]`); the root is `[]`.
pub type ModulePath = Vec<String>;

/// Every module of the crate under `src` (a `lib.rs` root), with the sibling-level modules
/// it depends on, keyed by their common parent.
pub fn dependencies(src: &Path) -> BTreeMap<ModulePath, BTreeSet<(String, String)>> {
    let files = module_files(src);
    let modules: BTreeSet<ModulePath> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<ModulePath, BTreeSet<(String, String)>> = BTreeMap::new();
    for (module, text) in &files {
        for path in referenced_paths(text) {
            let Some(target) = resolve(module, &path, &modules) else {
                continue;
            };
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            // An ancestor or a descendant: containment.
            if common == module.len() || common == target.len() {
                continue;
            }
            edges
                .entry(module[..common].to_vec())
                .or_default()
                .insert((module[common].clone(), target[common].clone()));
        }
    }
    edges
}

/// The cycles among siblings, each as `parent: a → b → … → a`.
pub fn cycles(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for (parent, edges) in dependencies(src) {
        let nodes: BTreeSet<&String> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
        for start in &nodes {
            if let Some(cycle) = path_back(start, start, &edges, &mut BTreeSet::new()) {
                let prefix = if parent.is_empty() {
                    "crate".to_string()
                } else {
                    parent.join("::")
                };
                let mut names = vec![start.to_string()];
                names.extend(cycle);
                let text = format!("{prefix}: {}", names.join(" → "));
                // Each cycle once, from its smallest member.
                if names.iter().all(|n| n.as_str() >= start.as_str()) {
                    found.push(text);
                }
            }
        }
    }
    found
}

fn path_back(
    from: &str,
    to: &str,
    edges: &BTreeSet<(String, String)>,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for (_, next) in edges.iter().filter(|(a, _)| a == from) {
        if next == to {
            return Some(vec![next.clone()]);
        }
        if seen.insert(next.clone())
            && let Some(mut rest) = path_back(next, to, edges, seen)
        {
            rest.insert(0, next.clone());
            return Some(rest);
        }
    }
    None
}

/// `(module path, source without its test module)` for every `.rs` file under `src`.
fn module_files(src: &Path) -> Vec<(ModulePath, String)> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let mut module: ModulePath = relative
                .with_extension("")
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            match module.last().map(String::as_str) {
                Some("lib") if module.len() == 1 => module.clear(),
                Some("main") if module.len() == 1 => continue,
                Some("mod") => {
                    module.pop();
                }
                _ => {}
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            files.push((module, strip_comments(&text)));
        }
    }
    files
}

/// The text without `//` comments (doc comments name modules in prose).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::…`, `super::…` and `self::…` path the text names, `use` groups expanded.
fn referenced_paths(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        let line = line.trim_start();
        let Some(tree) = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|start| line.strip_prefix(start))
        else {
            continue;
        };
        // A `use` may span lines, up to its `;`.
        let mut statement = tree.to_string();
        for next in &lines[index + 1..] {
            if statement.contains(';') {
                break;
            }
            statement.push_str(next);
        }
        let statement = statement.split(';').next().unwrap_or_default();
        let mut tree = statement.split_whitespace().collect::<Vec<_>>().join(" ");
        for punctuation in ["::", "{", "}", ","] {
            tree = tree
                .replace(&format!(" {punctuation}"), punctuation)
                .replace(&format!("{punctuation} "), punctuation);
        }
        expand(&tree, Vec::new(), &mut paths);
    }
    for root in ["crate::", "super::", "self::"] {
        let mut rest = text;
        while let Some(at) = rest.find(root) {
            let before = rest[..at].chars().last();
            let path: String = rest[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            rest = &rest[at + root.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            paths.push(
                path.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            );
        }
    }
    paths
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim_start_matches("::");
    match tree.find('{') {
        Some(open) => {
            let mut base = prefix;
            base.extend(
                tree[..open]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&inner[start..i], base.clone(), out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            expand(&inner[start..], base, out);
        }
        None => {
            let mut path = prefix;
            let name = tree.split(" as ").next().unwrap_or(tree);
            path.extend(
                name.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
            if !path.is_empty() {
                out.push(path);
            }
        }
    }
}

/// The module `path` (named in `from`) lands in: the longest known module it starts with.
fn resolve(
    from: &ModulePath,
    path: &[String],
    modules: &BTreeSet<ModulePath>,
) -> Option<ModulePath> {
    let mut absolute: ModulePath = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self") => from.clone(),
        Some("super") => from[..from.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    let mut segments = path[1..].iter().peekable();
    while segments.peek().map(|s| s.as_str()) == Some("super") {
        absolute.pop();
        segments.next();
    }
    let mut target = absolute.clone();
    for segment in segments {
        let mut longer = target.clone();
        longer.push(segment.clone());
        if modules.contains(&longer) {
            target = longer;
        } else {
            break;
        }
    }
    Some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn a_cycle_between_siblings_is_found_and_containment_is_not_one() {
        let dir = crate_with(&[
            ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
            ("a.rs", "use crate::b::{x, y::Z};\n"),
            ("b/mod.rs", "pub mod y;\nuse super::c::thing;\n"),
            ("b/y.rs", "use super::super::c::Q;\nuse super::*;\n"),
            (
                "c.rs",
                "fn f() { crate::a::g() }\n// crate::b in a comment\n",
            ),
        ]);
        let found = cycles(dir.path());
        assert_eq!(found, ["crate: a → b → c → a"]);
    }

    #[test]
    fn one_way_dependencies_have_no_cycle() {
        let dir = crate_with(&[
            ("lib.rs", "pub mod p;\n"),
            ("p/mod.rs", "mod e;\nmod s;\npub use e::E;\n"),
            ("p/e.rs", "use super::s::S;\n"),
            (
                "p/s.rs",
                "use crate::p::E as _; // not a real use\n#[cfg(test)]\nmod tests {\n    use super::super::e::E;\n}\n",
            ),
        ]);
        // `s` names `crate::p::E`: its parent, not a sibling.
        assert!(cycles(dir.path()).is_empty(), "{:?}", cycles(dir.path()));
    }
}
