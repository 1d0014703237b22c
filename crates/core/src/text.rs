//! Vietnamese text folding for search: "Hàng giả" and "hang gia" fold to the
//! same words.
//!
//! Folding = Unicode NFD, drop combining marks (tones and vowel marks),
//! map đ/Đ to d, lower-case. Tokens are maximal runs of letters and digits.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Folds text for diacritic- and case-insensitive comparison.
pub fn fold(text: &str) -> String {
    // Lower-case first: some upper-case letters lower-case to a base letter
    // plus a combining mark, which the next step must see.
    let lower: String = text.chars().flat_map(char::to_lowercase).collect();
    lower
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .map(|c| if c == 'đ' || c == 'Đ' { 'd' } else { c })
        .flat_map(char::to_lowercase)
        .collect()
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
    let mut w: Vec<String> = words(text)
        .into_iter()
        .map(|w| w.chars().take(MAX_WORD_CHARS).collect())
        .collect();
    w.sort();
    w.dedup();
    w
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
        fn index_words_are_folded_sorted_unique(s in "\\PC{0,60}") {
            let w = index_words(&s);
            for pair in w.windows(2) { prop_assert!(pair[0] < pair[1]); }
            for x in &w { prop_assert_eq!(&fold(x), x); }
        }
    }
}
