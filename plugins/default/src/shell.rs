//! Python's `shlex.split(command)` (POSIX mode, comments off), which Prefect's worker uses to
//! turn a string `command` into the container's `args`.
//!
//! A port of `shlex.shlex.read_token` rather than the `shlex` crate: the crate follows the
//! POSIX shell more closely than Python does (it treats `#` as a comment, drops a
//! backslash-newline, and unescapes `\$` inside double quotes), and the args must be the ones
//! Prefect's worker would give.

/// Why a command cannot be split (Python raises `ValueError` with these words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    NoClosingQuotation,
    NoEscapedCharacter,
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SplitError::NoClosingQuotation => "No closing quotation",
            SplitError::NoEscapedCharacter => "No escaped character",
        })
    }
}

const WHITESPACE: &[char] = &[' ', '\t', '\r', '\n'];
const QUOTES: &[char] = &['\'', '"'];
const ESCAPE: char = '\\';
/// Inside these quotes (only double quotes) a backslash escapes.
const ESCAPED_QUOTES: &[char] = &['"'];

#[derive(Clone, Copy, PartialEq)]
enum State {
    /// Between tokens.
    Space,
    /// In a word.
    Word,
    /// Inside this quote.
    Quote(char),
    /// After a backslash; then back to this state.
    Escape(Escaped),
}

#[derive(Clone, Copy, PartialEq)]
enum Escaped {
    Word,
    Quote(char),
}

/// `shlex.split(command)`.
pub fn split(command: &str) -> Result<Vec<String>, SplitError> {
    let mut chars = command.chars();
    let mut tokens = Vec::new();
    while let Some(token) = read_token(&mut chars)? {
        tokens.push(token);
    }
    Ok(tokens)
}

/// The next token; `None` at the end.
fn read_token(chars: &mut std::str::Chars<'_>) -> Result<Option<String>, SplitError> {
    let mut token = String::new();
    let mut quoted = false;
    let mut state = State::Space;
    loop {
        let next = chars.next();
        match state {
            State::Space => match next {
                None => break,
                Some(c) if WHITESPACE.contains(&c) => {
                    if !token.is_empty() || quoted {
                        break;
                    }
                }
                Some(ESCAPE) => state = State::Escape(Escaped::Word),
                Some(c) if QUOTES.contains(&c) => state = State::Quote(c),
                Some(c) => {
                    token.push(c);
                    state = State::Word;
                }
            },
            State::Quote(quote) => {
                quoted = true;
                match next {
                    None => return Err(SplitError::NoClosingQuotation),
                    Some(c) if c == quote => state = State::Word,
                    Some(ESCAPE) if ESCAPED_QUOTES.contains(&quote) => {
                        state = State::Escape(Escaped::Quote(quote));
                    }
                    Some(c) => token.push(c),
                }
            }
            State::Escape(escaped) => {
                let Some(c) = next else {
                    return Err(SplitError::NoEscapedCharacter);
                };
                // Inside quotes only the quote and the backslash itself are escaped.
                if let Escaped::Quote(quote) = escaped
                    && c != ESCAPE
                    && c != quote
                {
                    token.push(ESCAPE);
                }
                token.push(c);
                state = match escaped {
                    Escaped::Word => State::Word,
                    Escaped::Quote(quote) => State::Quote(quote),
                };
            }
            State::Word => match next {
                None => break,
                Some(c) if WHITESPACE.contains(&c) => {
                    if !token.is_empty() || quoted {
                        break;
                    }
                    state = State::Space;
                }
                Some(c) if QUOTES.contains(&c) => state = State::Quote(c),
                Some(ESCAPE) => state = State::Escape(Escaped::Word),
                Some(c) => token.push(c),
            },
        }
    }
    Ok((quoted || !token.is_empty()).then_some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers from Python's `shlex.split`.
    #[test]
    fn splits_as_python_does() {
        let cases: &[(&str, &[&str])] = &[
            (
                "prefect flow-run execute",
                &["prefect", "flow-run", "execute"],
            ),
            (
                "notify --channel #alerts",
                &["notify", "--channel", "#alerts"],
            ),
            ("a \\\nb", &["a", "\nb"]),
            (r#"echo "\$HOME \" \\ \n""#, &["echo", r#"\$HOME " \ \n"#]),
            ("one\rtwo", &["one", "two"]),
            ("'' \"\" x", &["", "", "x"]),
            ("'a b'c' d'", &["a bc d"]),
            ("a\\ b c\\\\d", &["a b", "c\\d"]),
            ("  ", &[]),
        ];
        for (command, expected) in cases {
            assert_eq!(split(command).unwrap(), *expected, "{command:?}");
        }
    }

    #[test]
    fn unclosed_quotes_and_trailing_backslashes_are_refused_with_pythons_words() {
        assert_eq!(split("echo 'open"), Err(SplitError::NoClosingQuotation));
        assert_eq!(split("echo \\"), Err(SplitError::NoEscapedCharacter));
        assert_eq!(split("echo \"a\\"), Err(SplitError::NoEscapedCharacter));
    }
}
