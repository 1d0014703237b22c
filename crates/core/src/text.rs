//! Vietnamese text folding for search: "Hàng giả" and "hang gia" fold to the
//! same words.
//!
//! Folding = Unicode NFD, drop combining marks (tones and vowel marks),
//! map đ/Đ to d, lower-case. Tokens are maximal runs of letters and digits.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::{decompose_canonical, is_combining_mark};

/// Folds text for diacritic- and case-insensitive comparison.
///
/// Character by character: lower-case (some upper-case letters lower-case
/// to a base letter plus a combining mark, which the next step must see),
/// canonical decomposition, combining marks dropped, đ to d, lower-case
/// again. That is the whole text's NFD with marks dropped: NFD differs from
/// per-character decomposition only in the order of characters of non-zero
/// combining class, and every such character is a combining mark, so it is
/// dropped either way (a test checks that for every character).
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let table = short_folds();
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        match table.get(c as usize - 0x80).copied() {
            Some(NOTHING) => {}
            Some(SLOW) | None => fold_char(c, &mut out),
            Some(one) => out.extend(char::from_u32(one)),
        }
    }
    out
}

/// [`fold`] of one character, appended to `out`.
fn fold_char(c: char, out: &mut String) {
    for lower in c.to_lowercase() {
        decompose_canonical(lower, |d| {
            if is_combining_mark(d) {
                return;
            }
            let d = if d == 'đ' || d == 'Đ' { 'd' } else { d };
            out.extend(d.to_lowercase());
        });
    }
}

/// Non-ASCII characters below this have their fold in [`short_folds`]:
/// Latin-1, the Latin extensions, the combining marks and Latin Extended
/// Additional, where every Vietnamese letter is.
const SHORT_FOLDS_END: u32 = 0x2000;
/// In [`short_folds`]: the character folds to nothing (a combining mark).
const NOTHING: u32 = 0;
/// In [`short_folds`]: the character folds to more than one character.
const SLOW: u32 = u32::MAX;

/// What [`fold_char`] makes of each character from U+0080 to
/// `SHORT_FOLDS_END`, made by it once: its one character, [`NOTHING`] or
/// [`SLOW`]. Folding a Vietnamese letter is then one look-up instead of
/// two case mappings and a decomposition (the writer folds every entry's
/// text).
fn short_folds() -> &'static [u32] {
    static TABLE: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0x80..SHORT_FOLDS_END)
            .map(|code| {
                let Some(c) = char::from_u32(code) else {
                    return SLOW;
                };
                let mut folded = String::new();
                fold_char(c, &mut folded);
                let mut chars = folded.chars();
                match (chars.next(), chars.next()) {
                    (None, _) => NOTHING,
                    (Some(one), None) => u32::from(one),
                    _ => SLOW,
                }
            })
            .collect()
    })
}

/// Folded words of `text`, in order, duplicates kept.
pub fn words(text: &str) -> Vec<String> {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Folded words of `text`, sorted and without duplicates, at most
/// `MAX_WORD_CHARS` characters each (longer words are cut, consistently for
/// indexing and querying).
pub fn index_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_index_word(text, |w| out.push(w.to_owned()));
    out
}

/// Calls `f` with each word [`index_words`] returns, in its order, without
/// making a string of each (the writer indexes every entry's text).
pub fn for_each_index_word(text: &str, mut f: impl FnMut(&str)) {
    let folded = fold(text);
    let mut w: Vec<&str> = folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| match w.char_indices().nth(MAX_WORD_CHARS) {
            Some((cut, _)) => &w[..cut],
            None => w,
        })
        .collect();
    w.sort_unstable();
    w.dedup();
    for word in w {
        f(word);
    }
}

/// Longest word kept in the text index.
pub const MAX_WORD_CHARS: usize = 40;

/// Text in Unicode NFC, the form stored in signed entries.
pub fn nfc(text: &str) -> String {
    text.nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The table is only a faster way to the same folds: for every
    /// character, [`fold`] agrees with [`fold_char`].
    #[test]
    fn the_table_of_short_folds_agrees_with_folding_each_character() {
        let mut slow = String::new();
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
            slow.clear();
            if c.is_ascii() {
                slow.push(c.to_ascii_lowercase());
            } else {
                fold_char(c, &mut slow);
            }
            assert_eq!(fold(c.encode_utf8(&mut [0; 4])), slow, "U+{:04X}", c as u32);
        }
        assert_eq!(fold("Đường Lạng Sơn"), "duong lang son");
    }

    #[test]
    fn vietnamese_with_and_without_diacritics_fold_alike() {
        assert_eq!(fold("Hàng giả"), "hang gia");
        assert_eq!(fold("ĐỒNG NAI"), "dong nai");
        assert_eq!(fold("Lạng Sơn"), "lang son");
        assert_eq!(
            words("Mỹ phẩm giả, nhãn hiệu \"Ohui\"!"),
            ["my", "pham", "gia", "nhan", "hieu", "ohui"]
        );
    }

    /// The whole-text form `fold` is equivalent to.
    fn fold_whole_text(text: &str) -> String {
        let lower: String = text.chars().flat_map(char::to_lowercase).collect();
        lower
            .nfd()
            .filter(|c| !is_combining_mark(*c))
            .map(|c| if c == 'đ' || c == 'Đ' { 'd' } else { c })
            .flat_map(char::to_lowercase)
            .collect()
    }

    #[test]
    fn every_character_reordered_by_nfd_is_a_combining_mark() {
        // What makes folding character by character equal to folding the
        // whole text's NFD (see `fold`).
        let reordered = (0..=0x10FFFF_u32)
            .filter_map(char::from_u32)
            .filter(|&c| unicode_normalization::char::canonical_combining_class(c) != 0);
        for c in reordered {
            assert!(is_combining_mark(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn folding_by_character_equals_folding_the_whole_text() {
        // Marks in both canonical orders, a letter whose lower case has a
        // mark (İ), đ, and Vietnamese in NFC and NFD.
        for s in [
            "Hàng giả",
            "ĐỒNG NAI Đ đ",
            "a\u{0323}\u{0302} a\u{0302}\u{0323}",
            "İSTANBUL",
            "Ω Å K",
            "Mỹ phẩm giả, nhãn hiệu \"Ohui\"!",
        ] {
            let nfd: String = s.nfd().collect();
            assert_eq!(fold(s), fold_whole_text(s), "{s:?}");
            assert_eq!(fold(&nfd), fold_whole_text(&nfd), "{s:?}");
        }
    }

    #[test]
    fn nfc_and_nfd_inputs_fold_alike() {
        let nfc_form = "Hàng giả";
        let nfd_form: String = nfc_form.nfd().collect();
        assert_ne!(nfc_form, nfd_form);
        assert_eq!(fold(nfc_form), fold(&nfd_form));
        assert_eq!(nfc(&nfd_form), nfc_form);
    }

    proptest! {
        #[test]
        fn folding_is_idempotent(s in "\\PC{0,40}") {
            let once = fold(&s);
            prop_assert_eq!(fold(&once), once.clone());
        }

        #[test]
        fn folding_by_character_equals_folding_the_whole_text_for_any_text(s in "\\PC{0,60}") {
            prop_assert_eq!(fold(&s), fold_whole_text(&s));
        }

        #[test]
        fn index_words_are_folded_sorted_unique(s in "\\PC{0,60}") {
            let w = index_words(&s);
            for pair in w.windows(2) { prop_assert!(pair[0] < pair[1]); }
            for x in &w { prop_assert_eq!(&fold(x), x); }
        }
    }
}
