//! Prefect's job template placeholders: `{{ name }}`, as `prefect.utilities.templating` finds
//! them with `PLACEHOLDER_CAPTURE_REGEX` (`\{\{\s*([\w\.\-\[\]$]+)\s*\}\}`, Python's Unicode
//! `\w` and `\s`). One grammar for the stock plugin (which fills job variables in) and the host
//! (which resolves blocks and variables through the API), so that they never disagree on what
//! a placeholder is; `template` applies values to a template as Prefect does. Small on
//! purpose: the stock plugin is a small wasm component.

pub mod template;

/// One placeholder found in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placeholder<'a> {
    /// `{{ name }}` as written, spaces included.
    pub full_match: &'a str,
    /// What is inside: `name`, `prefect.blocks.secret.db`, `$HOME`.
    pub name: &'a str,
}

impl Placeholder<'_> {
    pub fn kind(&self) -> Kind {
        if self.name.starts_with(BLOCKS) {
            Kind::Block
        } else if self.name.starts_with(VARIABLES) {
            Kind::Variable
        } else if self.name.starts_with('$') {
            Kind::EnvVar
        } else {
            Kind::Standard
        }
    }
}

/// What a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A job variable.
    Standard,
    /// `{{ $NAME }}`: an environment variable of the worker.
    EnvVar,
    /// `{{ prefect.blocks.TYPE.NAME[.path] }}`.
    Block,
    /// `{{ prefect.variables.NAME }}`.
    Variable,
}

pub const BLOCKS: &str = "prefect.blocks.";
pub const VARIABLES: &str = "prefect.variables.";

/// The placeholders of `text`, left to right as `re.findall` finds them.
pub fn find(text: &str) -> Vec<Placeholder<'_>> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = text[at..].find("{{") {
        let start = at + offset;
        match match_at(text, start) {
            Some((end, name)) => {
                found.push(Placeholder {
                    full_match: &text[start..end],
                    name,
                });
                at = end;
            }
            None => at = start + 1,
        }
    }
    found
}

/// The placeholders of `text`, each once, in the order first found (Python collects them in
/// a set before replacing).
pub fn find_distinct(text: &str) -> Vec<Placeholder<'_>> {
    let mut distinct: Vec<Placeholder<'_>> = Vec::new();
    for placeholder in find(text) {
        if !distinct
            .iter()
            .any(|p| p.full_match == placeholder.full_match)
        {
            distinct.push(placeholder);
        }
    }
    distinct
}

/// Matches the pattern at `start` (which holds `{{`); the end and the name.
fn match_at(text: &str, start: usize) -> Option<(usize, &str)> {
    let rest = &text[start + 2..];
    let after_space = rest.trim_start_matches(is_python_space);
    let name_len = after_space
        .char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map_or(after_space.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let name = &after_space[..name_len];
    let tail = &after_space[name_len..];
    let closing = tail.trim_start_matches(is_python_space);
    closing.starts_with("}}").then(|| {
        let end = text.len() - closing.len() + 2;
        (end, name)
    })
}

/// `[\w\.\-\[\]$]`: Python's `\w` is a letter, digit or `_` of any script.
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']' | '$')
}

/// Python's `\s` in a str pattern: `str.isspace()`, which also takes the ASCII separators
/// U+001C to U+001F that Unicode's White_Space does not.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<&str> {
        find(text).iter().map(|p| p.name).collect()
    }

    #[test]
    fn placeholders_are_found_as_prefects_regex_finds_them() {
        assert_eq!(names("{{ image }}"), ["image"]);
        assert_eq!(names("{{image}}:{{ tag }}"), ["image", "tag"]);
        assert_eq!(names("{{ a b }}"), Vec::<&str>::new());
        assert_eq!(names("{{{ x }}}"), ["x"]);
        assert_eq!(
            names("{{ env.K1 }}{{ list[0] }}{{ $HOME }}"),
            ["env.K1", "list[0]", "$HOME"]
        );
        assert_eq!(names("{{ 名前 }}"), ["名前"]);
        assert_eq!(names("{{\u{1f}x\u{a0}}}"), ["x"]);
        assert_eq!(names("{{ x }"), Vec::<&str>::new());
        let found = find("a {{  x  }} b");
        assert_eq!(found[0].full_match, "{{  x  }}");
    }

    #[test]
    fn kinds_and_distinct_placeholders() {
        let found = find_distinct(
            "{{ x }}-{{ x }}-{{ prefect.blocks.secret.db }}-{{ prefect.variables.v }}-{{ $E }}",
        );
        let kinds: Vec<Kind> = found.iter().map(Placeholder::kind).collect();
        assert_eq!(
            kinds,
            [Kind::Standard, Kind::Block, Kind::Variable, Kind::EnvVar]
        );
    }
}
