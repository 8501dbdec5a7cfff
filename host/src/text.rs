//! Small text helpers shared by the commands and the parts.

/// How the agent's panic hook begins its last line (tests count agents that panicked by it).
pub const INTERNAL_ERROR: &str = "error: internal error";

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub fn shorten(mut text: String, max: usize) -> String {
    if text.len() > max {
        let cut = text.floor_char_boundary(max);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// `64MiB` for 64 << 20; exact, never rounded (`1536KiB`, `1000 bytes`).
pub fn show_bytes(bytes: usize) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// `1h`, `365d`, `100ms`, `0s`: a limit in the largest unit that divides it exactly.
pub fn show_duration(duration: std::time::Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".into();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

/// An error and its causes in one line, each cause once: `anyhow`'s `{:#}` repeats a cause
/// that an error's own message already quotes (kube's, io's), which reads as a stutter.
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_at_a_character_boundary() {
        assert_eq!(super::shorten("héllo".into(), 2), "h…");
        assert_eq!(super::shorten("short".into(), 10), "short");
    }

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let io = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory (os error 2)",
        );
        let error = anyhow::Error::new(io)
            .context("cannot read x.wasm: No such file or directory (os error 2)")
            .context("plugin x");
        assert_eq!(
            super::error_chain(&error),
            "plugin x: cannot read x.wasm: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn limits_show_in_their_largest_exact_unit() {
        use std::time::Duration;
        assert_eq!(
            super::show_duration(Duration::from_secs(365 * 86_400)),
            "365d"
        );
        assert_eq!(super::show_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(super::show_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(super::show_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn sizes_show_exactly() {
        assert_eq!(super::show_bytes(64 << 20), "64MiB");
        assert_eq!(super::show_bytes(1536 << 10), "1536KiB");
        assert_eq!(super::show_bytes(1000), "1000 bytes");
    }
}
