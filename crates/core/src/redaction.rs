//! Withholding fields from some recipients while every recipient verifies
//! the same signature.
//!
//! The author's node replaces each withheld field's value by the empty
//! string in the alert it signs, and lists the field's salted commitment in
//! `Alert.redacted`. Recipients allowed to see the field get an [`Opening`]
//! (salt and value) next to the entry; they check it against the signed
//! commitment with [`check_openings`]. Others see only the commitment.
//!
//! Field paths are concrete (`subjects[2].person.citizen_id`,
//! `location.address`, `description`); the agreement speaks of generic paths
//! (`person.citizen_id`), see [`generic_path`].

use std::collections::BTreeSet;

use lienthong_proto::v1::{Alert, Commitment, Opening, subject};

use crate::agreement::commit_field;

/// `subjects[2].person.citizen_id` → `person.citizen_id`; others unchanged.
pub fn generic_path(field: &str) -> &str {
    match field.strip_prefix("subjects[") {
        Some(rest) => rest.split_once("].").map_or(field, |(_, p)| p),
        None => field,
    }
}

/// Every redactable string field of an alert, by concrete path.
fn fields_mut(a: &mut Alert) -> Vec<(String, &mut String)> {
    let mut out: Vec<(String, &mut String)> = vec![("description".into(), &mut a.description)];
    if let Some(l) = a.location.as_mut() {
        out.push(("location.commune".into(), &mut l.commune));
        out.push(("location.address".into(), &mut l.address));
    }
    for (i, s) in a.subjects.iter_mut().enumerate() {
        match s.kind.as_mut() {
            Some(subject::Kind::Person(p)) => {
                out.push((
                    format!("subjects[{i}].person.citizen_id"),
                    &mut p.citizen_id,
                ));
                out.push((format!("subjects[{i}].person.full_name"), &mut p.full_name));
            }
            Some(subject::Kind::Vehicle(v)) => {
                out.push((format!("subjects[{i}].vehicle.plate"), &mut v.plate));
                out.push((
                    format!("subjects[{i}].vehicle.description"),
                    &mut v.description,
                ));
            }
            Some(subject::Kind::Business(b)) => {
                out.push((format!("subjects[{i}].business.tax_code"), &mut b.tax_code));
                out.push((format!("subjects[{i}].business.name"), &mut b.name));
                out.push((format!("subjects[{i}].business.address"), &mut b.address));
            }
            Some(subject::Kind::Goods(_)) | None => {}
        }
    }
    out
}

/// Withholds every non-empty field whose generic path is in `generic`:
/// clears it, lists its commitment in `alert.redacted`, and returns the
/// openings. `salt` supplies 32 random bytes per field (a parameter, so
/// this stays pure).
pub fn redact(
    alert: &mut Alert,
    generic: &BTreeSet<String>,
    salt: &mut dyn FnMut() -> [u8; 32],
) -> Vec<Opening> {
    let mut openings = Vec::new();
    let mut commitments = Vec::new();
    for (path, value) in fields_mut(alert) {
        if value.is_empty() || !generic.contains(generic_path(&path)) {
            continue;
        }
        let s = salt();
        commitments.push(Commitment {
            field: path.clone(),
            commitment: commit_field(value.as_bytes(), &s).to_vec(),
        });
        openings.push(Opening {
            field: path,
            salt: s.to_vec(),
            value: std::mem::take(value),
        });
    }
    alert.redacted.extend(commitments);
    openings
}

/// Why openings were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpeningError {
    /// No signed commitment for the field.
    #[error("opening for {0:?} has no commitment in the signed alert")]
    NoCommitment(String),
    /// Salt and value do not match the signed commitment.
    #[error("opening for {0:?} does not match its signed commitment")]
    Mismatch(String),
}

/// Checks every opening against the commitments signed in `alert`.
pub fn check_openings(alert: &Alert, openings: &[Opening]) -> Result<(), OpeningError> {
    for o in openings {
        let c = alert
            .redacted
            .iter()
            .find(|c| c.field == o.field)
            .ok_or_else(|| OpeningError::NoCommitment(o.field.clone()))?;
        let (Ok(salt), Ok(commitment)) = (
            <[u8; 32]>::try_from(o.salt.as_slice()),
            <[u8; 32]>::try_from(c.commitment.as_slice()),
        ) else {
            return Err(OpeningError::Mismatch(o.field.clone()));
        };
        if commit_field(o.value.as_bytes(), &salt) != commitment {
            return Err(OpeningError::Mismatch(o.field.clone()));
        }
    }
    Ok(())
}

/// The alert with the openings' values put back (for local display and
/// indexing; never for verification).
pub fn reveal(alert: &Alert, openings: &[Opening]) -> Alert {
    let mut a = alert.clone();
    for (path, value) in fields_mut(&mut a) {
        if let Some(o) = openings.iter().find(|o| o.field == path) {
            *value = o.value.clone();
        }
    }
    a
}

/// The openings a recipient may have: all but the generic fields withheld
/// from it.
pub fn allowed<'a>(openings: &'a [Opening], withheld: &[String]) -> Vec<Opening> {
    openings
        .iter()
        .filter(|o: &&'a Opening| !withheld.iter().any(|w| w == generic_path(&o.field)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lienthong_proto::v1::{Person, Subject, Vehicle};

    fn alert() -> Alert {
        Alert {
            description: "mô tả".into(),
            subjects: vec![
                Subject {
                    kind: Some(subject::Kind::Vehicle(Vehicle {
                        plate: "12C04567".into(),
                        ..Default::default()
                    })),
                },
                Subject {
                    kind: Some(subject::Kind::Person(Person {
                        citizen_id: "020085012345".into(),
                        full_name: "Hoàng Văn Thắng".into(),
                    })),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn redacted_fields_open_only_with_the_right_salt_and_value() {
        let mut a = alert();
        let mut n = 0u8;
        let fields: BTreeSet<String> = ["person.citizen_id".to_owned()].into();
        let openings = redact(&mut a, &fields, &mut || {
            n += 1;
            [n; 32]
        });
        assert_eq!(openings.len(), 1);
        assert_eq!(openings[0].field, "subjects[1].person.citizen_id");
        assert_eq!(openings[0].value, "020085012345");
        let Some(subject::Kind::Person(p)) = &a.subjects[1].kind else {
            panic!()
        };
        assert!(
            p.citizen_id.is_empty(),
            "the signed alert does not carry the value"
        );
        assert_eq!(p.full_name, "Hoàng Văn Thắng", "other fields untouched");
        assert_eq!(check_openings(&a, &openings), Ok(()));
        assert_eq!(reveal(&a, &openings), alert_with_redacted(&a));

        let mut forged = openings.clone();
        forged[0].value = "001099000000".into();
        assert!(matches!(
            check_openings(&a, &forged),
            Err(OpeningError::Mismatch(_))
        ));
        let mut wrong_field = openings.clone();
        wrong_field[0].field = "subjects[0].vehicle.plate".into();
        assert!(matches!(
            check_openings(&a, &wrong_field),
            Err(OpeningError::NoCommitment(_))
        ));
        assert!(allowed(&openings, &["person.citizen_id".to_owned()]).is_empty());
        assert_eq!(allowed(&openings, &["vehicle.plate".to_owned()]).len(), 1);
    }

    fn alert_with_redacted(a: &Alert) -> Alert {
        let mut x = alert();
        x.redacted = a.redacted.clone();
        x
    }

    #[test]
    fn generic_paths() {
        assert_eq!(
            generic_path("subjects[12].person.citizen_id"),
            "person.citizen_id"
        );
        assert_eq!(generic_path("location.address"), "location.address");
    }
}
