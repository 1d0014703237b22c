//! Search terms: the keys under which an entry is indexed, and the terms a
//! query looks for. Both sides come from here, so they always agree.
//!
//! A term is a tag byte, then the value: `c` category, `v` severity, `p`
//! province (observed in or concerned), `a` author, `i` subject identifier
//! (canonical form), `w` folded word.

use lienthong_proto::v1::{Alert, EntryBody, entry_body::Payload, subject};

use crate::alert::subject_identifiers;
use crate::text::index_words;

/// A search term, encoded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub Vec<u8>);

impl Term {
    fn new(tag: u8, value: &[u8]) -> Self {
        let mut v = Vec::with_capacity(1 + value.len());
        v.push(tag);
        v.extend_from_slice(value);
        Self(v)
    }
    /// Entries of this category (enum value).
    pub fn category(c: i32) -> Self {
        Self::new(b'c', &c.to_be_bytes())
    }
    /// Entries of this severity (enum value).
    pub fn severity(s: i32) -> Self {
        Self::new(b'v', &s.to_be_bytes())
    }
    /// Entries observed in or concerning a province.
    pub fn province(code: &str) -> Self {
        Self::new(b'p', code.as_bytes())
    }
    /// Entries by an author.
    pub fn author(code: &str) -> Self {
        Self::new(b'a', code.as_bytes())
    }
    /// Entries with a subject of this canonical identifier.
    pub fn identifier(id: &str) -> Self {
        Self::new(b'i', id.as_bytes())
    }
    /// Entries containing this folded word.
    pub fn word(w: &str) -> Self {
        Self::new(b'w', w.as_bytes())
    }
}

/// Every term an entry is indexed under, sorted and unique.
pub fn entry_terms(body: &EntryBody) -> Vec<Term> {
    let mut t = vec![Term::author(&body.author)];
    if let Some(Payload::Alert(a)) = &body.payload {
        alert_terms(a, &mut t);
    }
    t.sort();
    t.dedup();
    t
}

fn alert_terms(a: &Alert, t: &mut Vec<Term>) {
    t.push(Term::category(a.category));
    t.push(Term::severity(a.severity));
    if let Some(l) = &a.location {
        t.push(Term::province(&l.province));
    }
    t.extend(a.concerned_provinces.iter().map(|p| Term::province(p)));
    t.extend(subject_identifiers(a).iter().map(|i| Term::identifier(i)));
    t.extend(index_words(&alert_text(a)).iter().map(|w| Term::word(w)));
}

/// All free text of an alert, for the word index.
fn alert_text(a: &Alert) -> String {
    let mut s = format!("{}\n{}\n", a.title, a.description);
    if let Some(l) = &a.location {
        s.push_str(&format!("{}\n{}\n", l.commune, l.address));
    }
    for sub in &a.subjects {
        match &sub.kind {
            Some(subject::Kind::Business(b)) => {
                s.push_str(&format!("{} {} {}\n", b.tax_code, b.name, b.address))
            }
            Some(subject::Kind::Vehicle(v)) => {
                s.push_str(&format!("{} {}\n", v.plate, v.description))
            }
            Some(subject::Kind::Person(p)) => s.push_str(&format!("{}\n", p.full_name)),
            Some(subject::Kind::Goods(g)) => s.push_str(&format!("{} {}\n", g.description, g.unit)),
            None => {}
        }
    }
    s
}

/// The word terms a free-text query must all match.
pub fn query_words(text: &str) -> Vec<Term> {
    index_words(text).iter().map(|w| Term::word(w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lienthong_proto::v1::{Location, Person, Subject};

    #[test]
    fn query_with_or_without_diacritics_hits_the_same_terms() {
        let a = Alert {
            category: 3,
            severity: 2,
            title: "Phát hiện hàng giả".into(),
            location: Some(Location {
                province: "24".into(),
                ..Default::default()
            }),
            concerned_provinces: vec!["01".into()],
            subjects: vec![Subject {
                kind: Some(subject::Kind::Person(Person {
                    citizen_id: "001085012345".into(),
                    full_name: "Trần Thị Bích".into(),
                })),
            }],
            ..Default::default()
        };
        let body = EntryBody {
            author: "24".into(),
            payload: Some(Payload::Alert(a)),
            ..Default::default()
        };
        let terms = entry_terms(&body);
        for q in ["hàng giả", "hang gia", "HANG GIA", "bich"] {
            for w in query_words(q) {
                assert!(terms.contains(&w), "{q}");
            }
        }
        for t in [
            Term::province("24"),
            Term::province("01"),
            Term::author("24"),
            Term::category(3),
            Term::identifier("001085012345"),
        ] {
            assert!(terms.contains(&t));
        }
        // Citizen ids are identifiers, not words: they are only found by
        // exact identifier search.
        assert!(!terms.contains(&Term::word("001085012345")));
    }
}
