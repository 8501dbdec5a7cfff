//! Small text helpers.

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub fn shorten(mut text: String, max: usize) -> String {
    if text.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
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
}
