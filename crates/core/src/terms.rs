//! Search terms: the keys under which an entry is indexed, and the terms a
//! query looks for. Both sides come from here, so they always agree.
//!
//! A term is a tag byte, then the value: `c` category, `v` severity, `p`
//! province (observed in or concerned), `a` author, `i` subject identifier
//! (canonical form), `w` folded word, `k` entry kind, `t` thread (the case,
//! request or plan an entry belongs to, by the id of the entry that opened
//! it; the opening entry is in its own thread; a retraction is in its
//! target's thread).

use lienthong_proto::v1::{
    Alert, EntryBody, EntryKind, Location, Subject, case_event, entry_body::Payload,
    inspection_event, subject,
};

use crate::alert::subject_identifiers;
use crate::text::{for_each_index_word, index_words};

/// Version of what [`entry_terms`] computes. Raise it whenever the terms
/// of some entry change (a new payload kind, a new kind of term, another
/// normalisation): a store records the version its indexes were built
/// with and rebuilds them from the stored entries at open when it differs.
/// 1: the previous release (alerts only); 2: coordination entries (kind,
/// thread and opening terms).
pub const TERMS_VERSION: u32 = 2;

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
    /// Entries of this kind.
    pub fn kind(k: EntryKind) -> Self {
        Self::new(b'k', &(k as i32).to_be_bytes())
    }
    /// Entries that open a case, a request or a plan.
    pub fn opening() -> Self {
        Self::new(b'o', b"")
    }
    /// Entries of the case, request or plan opened by entry `id`.
    pub fn thread(id: &[u8]) -> Self {
        Self::new(b't', id)
    }
}

/// What kind of entry a body is.
pub fn entry_kind(body: &EntryBody) -> EntryKind {
    match &body.payload {
        None => EntryKind::Unspecified,
        Some(Payload::Alert(_)) => EntryKind::Alert,
        Some(Payload::Receipt(_)) => EntryKind::Receipt,
        Some(Payload::CaseEvent(_)) => EntryKind::CaseEvent,
        Some(Payload::AssistanceRequest(_)) => EntryKind::AssistanceRequest,
        Some(Payload::AssistanceAnswer(_)) => EntryKind::AssistanceAnswer,
        Some(Payload::Inspection(_)) => EntryKind::Inspection,
        Some(Payload::Meeting(_)) => EntryKind::Meeting,
        Some(Payload::Retraction(_)) => EntryKind::Retraction,
        Some(Payload::Escalation(_)) => EntryKind::Escalation,
    }
}

/// The thread an entry belongs to: the id of the entry that opened its
/// case, request or plan (its own id if it opened one); a retraction's
/// target. `None` for alerts, receipts and meetings.
pub fn thread_of(id: &[u8; 32], body: &EntryBody) -> Option<Vec<u8>> {
    let own_or = |t: &Vec<u8>| if t.is_empty() { id.to_vec() } else { t.clone() };
    match &body.payload {
        Some(Payload::CaseEvent(e)) => Some(own_or(&e.case_id)),
        Some(Payload::AssistanceRequest(_)) => Some(id.to_vec()),
        Some(Payload::AssistanceAnswer(a)) => Some(a.request_id.clone()),
        Some(Payload::Escalation(e)) => Some(e.request_id.clone()),
        Some(Payload::Inspection(e)) => Some(own_or(&e.plan_id)),
        Some(Payload::Retraction(r)) => Some(r.target.clone()),
        _ => None,
    }
}

/// Every term the entry `id` with this body is indexed under, sorted and
/// unique.
pub fn entry_terms(id: &[u8; 32], body: &EntryBody) -> Vec<Term> {
    let mut t = vec![Term::author(&body.author), Term::kind(entry_kind(body))];
    if let Some(th) = thread_of(id, body) {
        if th == id {
            t.push(Term::opening());
        }
        t.push(Term::thread(&th));
    }
    match &body.payload {
        Some(Payload::Alert(a)) => alert_terms(a, &mut t),
        Some(Payload::CaseEvent(e)) => {
            case_terms(e, &mut t);
            // A newcomer holds the case's opening only inside the history
            // it was sent: index that opening here, so it finds the case.
            let opening = e.history.iter().find_map(|env| {
                let (_, b) = crate::entry::decode_envelope(env).ok()?;
                match b.payload {
                    Some(Payload::CaseEvent(h))
                        if matches!(h.event, Some(case_event::Event::Opened(_))) =>
                    {
                        Some(h)
                    }
                    _ => None,
                }
            });
            if let Some(o) = opening {
                t.push(Term::opening());
                case_terms(&o, &mut t);
            }
        }
        Some(Payload::AssistanceRequest(r)) => {
            t.push(Term::province(&r.to));
            subject_terms(&r.subjects, &r.question, &mut t);
        }
        Some(Payload::AssistanceAnswer(a)) => subject_terms(&a.subjects, &a.answer, &mut t),
        Some(Payload::Inspection(e)) => match &e.event {
            Some(inspection_event::Event::Plan(p)) => {
                t.extend(p.provinces.iter().map(|c| Term::province(c)));
                if p.category != 0 {
                    t.push(Term::category(p.category));
                }
                subject_terms(&p.targets, &format!("{}\n{}", p.title, p.scope), &mut t);
            }
            Some(inspection_event::Event::Report(r)) => subject_terms(&[], &r.findings, &mut t),
            _ => {}
        },
        Some(Payload::Meeting(m)) => {
            t.extend(m.participants.iter().map(|c| Term::province(c)));
            let text = format!(
                "{}\n{}\n{}\n{}",
                m.title,
                m.place,
                m.minutes,
                m.decisions.join("\n")
            );
            subject_terms(&[], &text, &mut t);
        }
        _ => {}
    }
    t.sort_unstable();
    t.dedup();
    t
}

fn case_terms(e: &lienthong_proto::v1::CaseEvent, t: &mut Vec<Term>) {
    use case_event::Event;
    let loc = |l: &Option<Location>, t: &mut Vec<Term>| {
        if let Some(l) = l {
            t.push(Term::province(&l.province));
        }
    };
    match &e.event {
        Some(Event::Opened(o)) => {
            t.push(Term::category(o.category));
            t.extend(o.invite.iter().map(|c| Term::province(c)));
            subject_terms(&o.subjects, &format!("{}\n{}", o.title, o.summary), t);
        }
        Some(Event::Invitation(i)) => t.extend(i.provinces.iter().map(|c| Term::province(c))),
        Some(Event::Handover(h)) => t.push(Term::province(&h.to)),
        Some(Event::InspectionResult(r)) => {
            loc(&r.location, t);
            subject_terms(&[], &r.findings, t);
        }
        Some(Event::Seizure(s)) => {
            loc(&s.location, t);
            let goods: Vec<Subject> = s
                .goods
                .iter()
                .map(|g| Subject {
                    kind: Some(subject::Kind::Goods(g.clone())),
                })
                .collect();
            subject_terms(&goods, &s.record_number, t);
        }
        Some(Event::Decision(d)) => subject_terms(
            d.violator.as_slice(),
            &format!("{}\n{}", d.decision_number, d.measures),
            t,
        ),
        Some(Event::Transfer(tr)) => {
            subject_terms(&[], &format!("{}\n{}", tr.agency, tr.reason), t)
        }
        Some(Event::Closure(c)) => subject_terms(&[], &c.summary, t),
        _ => {}
    }
}

/// Identifier and word terms of subjects plus free text.
fn subject_terms(subjects: &[Subject], text: &str, t: &mut Vec<Term>) {
    let as_alert = Alert {
        title: text.to_owned(),
        subjects: subjects.to_vec(),
        ..Default::default()
    };
    t.extend(
        subject_identifiers(&as_alert)
            .iter()
            .map(|i| Term::identifier(i)),
    );
    for_each_index_word(&alert_text(&as_alert), |w| t.push(Term::word(w)));
}

fn alert_terms(a: &Alert, t: &mut Vec<Term>) {
    t.push(Term::category(a.category));
    t.push(Term::severity(a.severity));
    if let Some(l) = &a.location {
        t.push(Term::province(&l.province));
    }
    t.extend(a.concerned_provinces.iter().map(|p| Term::province(p)));
    t.extend(subject_identifiers(a).iter().map(|i| Term::identifier(i)));
    for_each_index_word(&alert_text(a), |w| t.push(Term::word(w)));
}

/// All free text of an alert, for the word index: its fields, each
/// followed by a line break (a separator, so words never join).
fn alert_text(a: &Alert) -> String {
    let mut s = String::with_capacity(a.title.len() + a.description.len() + 64);
    let mut put = |parts: &[&str]| {
        for p in parts {
            s.push_str(p);
            s.push('\n');
        }
    };
    put(&[&a.title, &a.description]);
    if let Some(l) = &a.location {
        put(&[&l.commune, &l.address]);
    }
    for sub in &a.subjects {
        match &sub.kind {
            Some(subject::Kind::Business(b)) => put(&[&b.tax_code, &b.name, &b.address]),
            Some(subject::Kind::Vehicle(v)) => put(&[&v.plate, &v.description]),
            Some(subject::Kind::Person(p)) => put(&[&p.full_name]),
            Some(subject::Kind::Goods(g)) => put(&[&g.description, &g.unit]),
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
        let terms = entry_terms(&[0; 32], &body);
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
