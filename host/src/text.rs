//! Small text helpers shared by the commands and the parts.

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

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_at_a_character_boundary() {
        assert_eq!(super::shorten("héllo".into(), 2), "h…");
        assert_eq!(super::shorten("short".into(), 10), "short");
    }

    #[test]
    fn sizes_show_exactly() {
        assert_eq!(super::show_bytes(64 << 20), "64MiB");
        assert_eq!(super::show_bytes(1536 << 10), "1536KiB");
        assert_eq!(super::show_bytes(1000), "1000 bytes");
    }
}
