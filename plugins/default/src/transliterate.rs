//! Transliteration to ASCII as python-slugify does it in Prefect's environment: with
//! text-unidecode 1.3 (python-slugify's fallback when the GPL `Unidecode` package is absent,
//! as it is where Prefect is installed). The `unidecode` crate carries the same table (both
//! descend from Perl's Text::Unidecode) but for the code points below, which are text-unidecode's
//! answers; the slug sweep in `plugins/default/tests/slug_sweep.rs` compares every code point
//! of the Basic Multilingual Plane and the emoji blocks with Prefect's own functions and keeps
//! this list true. Code points past the BMP have no entry in text-unidecode: they are dropped.

/// text-unidecode's answer where the `unidecode` crate's differs.
const DIFFERENCES: &[(char, &str)] = &[
    ('\u{80}', ""),
    ('\u{82}', ""),
    ('\u{83}', ""),
    ('\u{84}', ""),
    ('\u{85}', ""),
    ('\u{86}', ""),
    ('\u{87}', ""),
    ('\u{88}', ""),
    ('\u{89}', ""),
    ('\u{8a}', ""),
    ('\u{8b}', ""),
    ('\u{8c}', ""),
    ('\u{8e}', ""),
    ('\u{91}', ""),
    ('\u{92}', ""),
    ('\u{93}', ""),
    ('\u{94}', ""),
    ('\u{95}', ""),
    ('\u{96}', ""),
    ('\u{97}', ""),
    ('\u{98}', ""),
    ('\u{99}', ""),
    ('\u{9a}', ""),
    ('\u{9b}', ""),
    ('\u{9c}', ""),
    ('\u{9e}', ""),
    ('\u{9f}', ""),
    ('\u{2e5}', ""),
    ('\u{2e6}', ""),
    ('\u{2e7}', ""),
    ('\u{2e8}', ""),
    ('\u{2e9}', ""),
    ('\u{2ea}', ""),
    ('\u{2eb}', ""),
    ('\u{2ef}', "[?]"),
    ('\u{2f0}', "[?]"),
    ('\u{2f1}', "[?]"),
    ('\u{2f2}', "[?]"),
    ('\u{2f3}', "[?]"),
    ('\u{2f4}', "[?]"),
    ('\u{2f5}', "[?]"),
    ('\u{2f6}', "[?]"),
    ('\u{2f7}', "[?]"),
    ('\u{2f8}', "[?]"),
    ('\u{2f9}', "[?]"),
    ('\u{2fa}', "[?]"),
    ('\u{2fb}', "[?]"),
    ('\u{2fc}', "[?]"),
    ('\u{2fd}', "[?]"),
    ('\u{2fe}', "[?]"),
    ('\u{2ff}', "[?] "),
    ('\u{3f4}', "[?]"),
    ('\u{3f5}', "[?]"),
    ('\u{3f6}', "[?]"),
    ('\u{3f7}', "[?]"),
    ('\u{3f8}', "[?]"),
    ('\u{3f9}', "[?]"),
    ('\u{3fc}', "[?]"),
    ('\u{3fd}', "[?]"),
    ('\u{3fe}', "[?]"),
    ('\u{3ff}', "[?] "),
    ('\u{4ff}', "[?] "),
    ('\u{5ff}', "[?] "),
    ('\u{6ff}', "[?] "),
    ('\u{7ff}', "[?] "),
    ('\u{9ff}', "[?] "),
    ('\u{af0}', "[?]"),
    ('\u{af1}', "[?]"),
    ('\u{af9}', "[?]"),
    ('\u{aff}', "[?] "),
    ('\u{bff}', "[?] "),
    ('\u{cff}', "[?] "),
    ('\u{dff}', "[?] "),
    ('\u{eff}', "[?] "),
    ('\u{fff}', "[?] "),
    ('\u{10ff}', "[?] "),
    ('\u{11ff}', "[?] "),
    ('\u{13f5}', "[?]"),
    ('\u{13f8}', "[?]"),
    ('\u{13f9}', "[?]"),
    ('\u{13fa}', "[?]"),
    ('\u{13fb}', "[?]"),
    ('\u{13fc}', "[?]"),
    ('\u{13fd}', "[?]"),
    ('\u{13ff}', "[?] "),
    ('\u{16ff}', "[?] "),
    ('\u{17ff}', "[?] "),
    ('\u{18ff}', "[?] "),
    ('\u{1efa}', "[?]"),
    ('\u{1efb}', "[?]"),
    ('\u{1efc}', "[?]"),
    ('\u{1efd}', "[?]"),
    ('\u{1efe}', "[?]"),
    ('\u{1eff}', "[?] "),
    ('\u{1fff}', "[?] "),
    ('\u{20ff}', "[?] "),
    ('\u{21ff}', "[?] "),
    ('\u{22ff}', "[?] "),
    ('\u{23ff}', "[?] "),
    ('\u{24ff}', "[?] "),
    ('\u{25f4}', "#"),
    ('\u{25f5}', "#"),
    ('\u{25f6}', "#"),
    ('\u{25f7}', "#"),
    ('\u{25f8}', "[?]"),
    ('\u{25f9}', "[?]"),
    ('\u{25fa}', "[?]"),
    ('\u{25fb}', "[?]"),
    ('\u{25fc}', "[?]"),
    ('\u{25fd}', "[?]"),
    ('\u{25fe}', "[?]"),
    ('\u{25ff}', "[?] "),
    ('\u{26ff}', "[?] "),
    ('\u{27ff}', "[?] "),
    ('\u{2eff}', "[?] "),
    ('\u{2fff}', "[?] "),
    ('\u{30ff}', "[?] "),
    ('\u{31ff}', "[?] "),
    ('\u{32ff}', "[?] "),
    ('\u{33ff}', "[?] "),
    ('\u{4dff}', "[?] "),
    ('\u{9fff}', "[?] "),
    ('\u{a4ff}', "[?] "),
    ('\u{d7ff}', "[?] "),
    ('\u{faff}', "[?] "),
    ('\u{fdf0}', ""),
    ('\u{fdf1}', ""),
    ('\u{fdf2}', ""),
    ('\u{fdf3}', ""),
    ('\u{fdf4}', ""),
    ('\u{fdf5}', ""),
    ('\u{fdf6}', ""),
    ('\u{fdf7}', ""),
    ('\u{fdf8}', ""),
    ('\u{fdf9}', ""),
    ('\u{fdfa}', ""),
    ('\u{fdfb}', ""),
    ('\u{fdfc}', "[?]"),
    ('\u{fdfd}', "[?]"),
    ('\u{fdff}', "[?] "),
];

/// `text_unidecode.unidecode(text)`.
pub fn to_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if u32::from(c) > 0xFFFF {
            continue;
        }
        match DIFFERENCES.binary_search_by_key(&c, |(k, _)| *k) {
            Ok(index) => out.push_str(DIFFERENCES[index].1),
            Err(_) => out.push_str(unidecode::unidecode_char(c)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_differences_are_sorted_for_the_binary_search() {
        assert!(DIFFERENCES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn emoji_are_dropped_and_text_unidecodes_answers_win() {
        assert_eq!(to_ascii("🙂 happy"), " happy");
        assert_eq!(to_ascii("Crème"), "Creme");
        assert_eq!(to_ascii("\u{80}"), "");
        assert_eq!(to_ascii("\u{25f4}"), "#");
    }
}
