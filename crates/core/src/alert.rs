//! Validation and normalisation of alerts submitted by local systems.
//!
//! `validate_alert` is the only way to make a [`ValidAlert`]: it checks every
//! field, reports every problem at once (each naming the field path and the
//! fix), and returns the alert in the normalised form that will be signed
//! (text in NFC, identifiers in canonical form, provinces sorted).

use std::fmt;

use lienthong_proto::v1::{
    Alert, Attachment, Business, Category, Goods, Location, Person, Severity, Subject, Vehicle,
    subject,
};

use crate::provinces::is_province;
use crate::text::nfc;

/// One problem with one input field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `alert.subjects[1].person.citizen_id`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

/// Every problem found in one input, never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidInput(pub Vec<FieldError>);

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} invalid field(s): ", self.0.len())?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.problem)?;
        }
        Ok(())
    }
}

impl InvalidInput {
    /// A single-field error.
    pub fn one(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self(vec![FieldError {
            field: field.into(),
            problem: problem.into(),
        }])
    }
}

/// Collects field errors while walking an input.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<FieldError>);

impl Problems {
    pub(crate) fn add(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            problem: problem.into(),
        });
    }
}

/// Bounds, documented in `proto/lienthong/v1/entry.proto`.
pub mod limits {
    /// Longest `reference`.
    pub const REFERENCE_MAX: usize = 128;
    /// Longest title, in characters.
    pub const TITLE_MAX: usize = 300;
    /// Longest description, in characters.
    pub const DESCRIPTION_MAX: usize = 20_000;
    /// Most subjects per alert.
    pub const SUBJECTS_MAX: usize = 100;
    /// Most attachments per alert.
    pub const ATTACHMENTS_MAX: usize = 50;
    /// Largest attachment, bytes.
    pub const ATTACHMENT_SIZE_MAX: u64 = 10 * 1024 * 1024 * 1024;
    /// Earliest accepted observation time: 2000-01-01T00:00:00Z.
    pub const OBSERVED_MIN_UNIX_MS: i64 = 946_684_800_000;
    /// How far in the future (by the node's clock) an observation may be.
    pub const FUTURE_SLACK_MS: i64 = 5 * 60 * 1000;
    /// Largest amount in đồng (goods' estimated value, a fine): 10^15, a
    /// million billion đồng. Anything larger is a unit mistake, and sums
    /// of such amounts stay far from overflowing.
    pub const VND_MAX: u64 = 1_000_000_000_000_000;
    /// Largest quantity of goods.
    pub const QUANTITY_MAX: f64 = 1e12;
}

/// An alert that passed validation, in the normalised form that is signed.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidAlert(Alert);

impl ValidAlert {
    /// The normalised alert.
    pub fn get(&self) -> &Alert {
        &self.0
    }
    /// The normalised alert, by value.
    pub fn into_inner(self) -> Alert {
        self.0
    }
}

/// Checks and normalises an alert. `now_unix_ms` is the node's clock,
/// passed in so that this stays a pure function.
pub fn validate_alert(alert: Option<&Alert>, now_unix_ms: i64) -> Result<ValidAlert, InvalidInput> {
    let mut p = Problems::default();
    let Some(a) = alert else {
        return Err(InvalidInput::one(
            "alert",
            "missing: set the alert to submit",
        ));
    };
    let mut out = Alert::default();

    // reference
    if a.reference.is_empty() {
        p.add("alert.reference", "missing: set your system's own unique reference for this alert (e.g. \"hotline-2026-000123\"); it makes resubmission safe");
    } else if a.reference.len() > limits::REFERENCE_MAX
        || !a
            .reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:/".contains(&b))
    {
        p.add(
            "alert.reference",
            format!(
                "must be 1–{} characters from A–Z a–z 0–9 . _ : / -",
                limits::REFERENCE_MAX
            ),
        );
    } else {
        out.reference = a.reference.clone();
    }

    // category, severity
    match Category::try_from(a.category) {
        Ok(Category::Unspecified) => p.add("alert.category", "missing: choose one of SMUGGLING, TRADE_FRAUD, COUNTERFEIT, INTELLECTUAL_PROPERTY, PROHIBITED_GOODS, FOOD_SAFETY, POOR_QUALITY_GOODS, OTHER"),
        Ok(c) => out.category = c as i32,
        Err(_) => p.add("alert.category", format!("unknown value {}: use 1–8 (see enum Category)", a.category)),
    }
    match Severity::try_from(a.severity) {
        Ok(Severity::Unspecified) => p.add(
            "alert.severity",
            "missing: choose LOW, MEDIUM, HIGH or CRITICAL",
        ),
        Ok(s) => out.severity = s as i32,
        Err(_) => p.add(
            "alert.severity",
            format!("unknown value {}: use 1–4 (see enum Severity)", a.severity),
        ),
    }

    out.title = text_field(&mut p, "alert.title", &a.title, 1, limits::TITLE_MAX, false);
    out.description = text_field(
        &mut p,
        "alert.description",
        &a.description,
        0,
        limits::DESCRIPTION_MAX,
        true,
    );

    // location
    match &a.location {
        None => p.add(
            "alert.location",
            "missing: set at least location.province (two-digit code, e.g. \"20\" for Lạng Sơn)",
        ),
        Some(l) => out.location = Some(location(&mut p, l)),
    }

    // observed time
    if a.observed_unix_ms == 0 {
        p.add(
            "alert.observed_unix_ms",
            "missing: set when the violation was observed, in milliseconds since 1970-01-01 UTC",
        );
    } else if a.observed_unix_ms < limits::OBSERVED_MIN_UNIX_MS {
        p.add("alert.observed_unix_ms", "before 2000-01-01: the value must be in milliseconds (not seconds) since 1970-01-01 UTC");
    } else if a.observed_unix_ms > now_unix_ms.saturating_add(limits::FUTURE_SLACK_MS) {
        p.add("alert.observed_unix_ms", "in the future by more than 5 minutes: check the submitting system's clock and time zone (UTC)");
    } else {
        out.observed_unix_ms = a.observed_unix_ms;
    }

    // subjects
    if a.subjects.len() > limits::SUBJECTS_MAX {
        p.add(
            "alert.subjects",
            format!(
                "{} subjects: at most {} are allowed",
                a.subjects.len(),
                limits::SUBJECTS_MAX
            ),
        );
    } else {
        for (i, s) in a.subjects.iter().enumerate() {
            out.subjects
                .push(subject_field(&mut p, &format!("alert.subjects[{i}]"), s));
        }
    }

    // attachments
    if a.attachments.len() > limits::ATTACHMENTS_MAX {
        p.add(
            "alert.attachments",
            format!(
                "{} attachments: at most {} are allowed",
                a.attachments.len(),
                limits::ATTACHMENTS_MAX
            ),
        );
    } else {
        for (i, at) in a.attachments.iter().enumerate() {
            out.attachments
                .push(attachment(&mut p, &format!("alert.attachments[{i}]"), at));
        }
    }

    // concerned provinces
    let mut provinces = Vec::new();
    for (i, c) in a.concerned_provinces.iter().enumerate() {
        let field = format!("alert.concerned_provinces[{i}]");
        if !is_province(c) {
            p.add(field, format!("\"{c}\" is not a province code: use the two-digit code after the 2025 merger, e.g. \"24\" for Bắc Ninh"));
        } else if provinces.contains(c) {
            p.add(
                field,
                format!("\"{c}\" is listed twice: list each province once"),
            );
        } else {
            provinces.push(c.clone());
        }
    }
    provinces.sort();
    out.concerned_provinces = provinces;

    if !a.redacted.is_empty() {
        p.add(
            "alert.redacted",
            "set by the node when the agreement withholds fields; leave it empty",
        );
    }

    if p.0.is_empty() {
        Ok(ValidAlert(out))
    } else {
        Err(InvalidInput(p.0))
    }
}

pub(crate) fn text_field(
    p: &mut Problems,
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> String {
    let v = nfc(value.trim());
    let n = v.chars().count();
    // Text of only invisible characters shows as empty.
    let visible = v.chars().filter(|c| !is_invisible(*c)).count();
    if n < min || (min > 0 && visible == 0) {
        p.add(
            field,
            if min == 1 {
                "missing: must not be empty".to_owned()
            } else {
                format!("too short: at least {min} characters")
            },
        );
    } else if n > max {
        p.add(field, format!("too long: {n} characters, at most {max}"));
    } else if let Some(c) = v
        .chars()
        .find(|c| c.is_control() && !(multiline && (*c == '\n' || *c == '\t' || *c == '\r')))
    {
        p.add(
            field,
            format!(
                "contains control character U+{:04X}{}",
                c as u32,
                if multiline {
                    ": only line breaks and tabs are allowed"
                } else {
                    ": use a single line of text"
                }
            ),
        );
    } else if let Some(c) = v.chars().find(|c| is_bidi_control(*c)) {
        p.add(
            field,
            format!(
                "contains U+{:04X}, a bidirectional control: it makes text display in another order than it is stored and searched; remove it",
                c as u32
            ),
        );
    } else if let Some(c) = v.chars().find(|c| matches!(c, '\u{2028}' | '\u{2029}')) {
        p.add(
            field,
            format!(
                "contains U+{:04X}, a line or paragraph separator{}",
                c as u32,
                if multiline {
                    ": break lines with \\n"
                } else {
                    ": use a single line of text"
                }
            ),
        );
    }
    v
}

/// Characters that take no room when shown.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}'
    ) || c.is_whitespace()
}

/// Explicit bidirectional embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn location(p: &mut Problems, l: &Location) -> Location {
    if l.province.is_empty() {
        p.add(
            "alert.location.province",
            "missing: two-digit province code, e.g. \"01\" for Hà Nội",
        );
    } else if !is_province(&l.province) {
        p.add("alert.location.province", format!("\"{}\" is not a province code: use the two-digit code after the 2025 merger, e.g. \"20\" for Lạng Sơn", l.province));
    }
    Location {
        province: l.province.clone(),
        commune: text_field(p, "alert.location.commune", &l.commune, 0, 200, false),
        address: text_field(p, "alert.location.address", &l.address, 0, 500, false),
    }
}

pub(crate) fn subject_field(p: &mut Problems, field: &str, s: &Subject) -> Subject {
    let kind = match &s.kind {
        None => {
            p.add(
                field,
                "empty subject: set exactly one of business, vehicle, person, goods",
            );
            None
        }
        Some(subject::Kind::Business(b)) => {
            let f = format!("{field}.business");
            let tax_code = normalize_tax_code(&b.tax_code).unwrap_or_else(|| {
                p.add(
                    format!("{f}.tax_code"),
                    "must be a tax code of 10 digits, or 13 for a branch (\"0101234567-001\")",
                );
                b.tax_code.clone()
            });
            Some(subject::Kind::Business(Business {
                tax_code,
                name: text_field(p, &format!("{f}.name"), &b.name, 0, 300, false),
                address: text_field(p, &format!("{f}.address"), &b.address, 0, 500, false),
            }))
        }
        Some(subject::Kind::Vehicle(v)) => {
            let f = format!("{field}.vehicle");
            let country = if v.country.is_empty() {
                "VN".to_owned()
            } else {
                v.country.to_ascii_uppercase()
            };
            if !crate::countries::is_assigned(&country) {
                p.add(
                    format!("{f}.country"),
                    "must be an assigned ISO 3166-1 alpha-2 code such as \"VN\", \"CN\" or \"LA\" (\"GB\", not \"UK\"), or empty for VN",
                );
            }
            let plate = normalize_plate(&v.plate, &country).unwrap_or_else(|| {
                p.add(
                    format!("{f}.plate"),
                    if country == "VN" {
                        "not a Vietnamese plate: expected two digits, a series of 1–2 letters (optionally one digit) and 4–5 digits, e.g. \"29A-123.45\"; for a foreign plate set vehicle.country"
                    } else {
                        "must be 2–15 letters or digits (spaces, dots and dashes are ignored)"
                    },
                );
                v.plate.clone()
            });
            Some(subject::Kind::Vehicle(Vehicle {
                plate,
                country,
                description: text_field(
                    p,
                    &format!("{f}.description"),
                    &v.description,
                    0,
                    200,
                    false,
                ),
            }))
        }
        Some(subject::Kind::Person(ps)) => {
            let f = format!("{field}.person");
            let citizen_id = normalize_citizen_id(&ps.citizen_id).unwrap_or_else(|| {
                p.add(
                    format!("{f}.citizen_id"),
                    "must be the 12-digit citizen identity number",
                );
                ps.citizen_id.clone()
            });
            Some(subject::Kind::Person(Person {
                citizen_id,
                full_name: text_field(p, &format!("{f}.full_name"), &ps.full_name, 0, 200, false),
            }))
        }
        Some(subject::Kind::Goods(g)) => {
            let f = format!("{field}.goods");
            let hs_code = normalize_hs_code(&g.hs_code).unwrap_or_else(|| {
                p.add(
                    format!("{f}.hs_code"),
                    "must be an HS code of 4, 6 or 8 digits, e.g. \"3304.99.90\"",
                );
                g.hs_code.clone()
            });
            if !g.quantity.is_finite() || g.quantity < 0.0 {
                p.add(
                    format!("{f}.quantity"),
                    "must be a finite number, 0 or more",
                );
            } else if g.quantity > limits::QUANTITY_MAX {
                p.add(
                    format!("{f}.quantity"),
                    "more than 10^12: check the unit (e.g. count \"thùng\" rather than \"chiếc\")",
                );
            }
            let estimated_value_vnd = vnd(
                p,
                &format!("{f}.estimated_value_vnd"),
                g.estimated_value_vnd,
            );
            let unit = text_field(p, &format!("{f}.unit"), &g.unit, 0, 20, false);
            if g.quantity != 0.0 && unit.is_empty() {
                p.add(
                    format!("{f}.unit"),
                    "missing: a quantity needs a unit (e.g. \"thùng\", \"kg\", \"chiếc\")",
                );
            }
            Some(subject::Kind::Goods(Goods {
                hs_code,
                description: text_field(
                    p,
                    &format!("{f}.description"),
                    &g.description,
                    1,
                    500,
                    false,
                ),
                quantity: g.quantity,
                unit,
                estimated_value_vnd,
            }))
        }
    };
    Subject { kind }
}

/// An amount in đồng (a value, a fine), at most [`limits::VND_MAX`]: a
/// larger figure is a unit mistake.
pub(crate) fn vnd(p: &mut Problems, field: &str, amount: u64) -> u64 {
    if amount > limits::VND_MAX {
        p.add(
            field.to_owned(),
            "more than 10^15 đồng: amounts are in đồng, not thousandths of one",
        );
    }
    amount
}

fn attachment(p: &mut Problems, field: &str, a: &Attachment) -> Attachment {
    if a.sha256.len() != 32 {
        p.add(
            format!("{field}.sha256"),
            format!(
                "{} bytes: must be the 32-byte SHA-256 digest of the file",
                a.sha256.len()
            ),
        );
    }
    if !is_media_type(&a.media_type) {
        p.add(
            format!("{field}.media_type"),
            "must be a media type such as \"image/jpeg\" or \"application/pdf\"",
        );
    }
    if a.size_bytes == 0 || a.size_bytes > limits::ATTACHMENT_SIZE_MAX {
        p.add(
            format!("{field}.size_bytes"),
            "must be the file size in bytes, 1 byte to 10 GiB",
        );
    }
    Attachment {
        sha256: a.sha256.clone(),
        media_type: a.media_type.to_ascii_lowercase(),
        size_bytes: a.size_bytes,
        name: text_field(p, &format!("{field}.name"), &a.name, 0, 255, false),
    }
}

fn is_media_type(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.len() <= 127
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    matches!(s.split_once('/'), Some((a, b)) if token(a) && token(b))
}

/// Canonical tax code: 10 digits, or `NNNNNNNNNN-NNN` for a branch.
pub fn normalize_tax_code(s: &str) -> Option<String> {
    let s = s.trim();
    let digits: String = s.chars().filter(|c| *c != '-' && *c != ' ').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match digits.len() {
        10 => Some(digits),
        13 => Some(format!("{}-{}", &digits[..10], &digits[10..])),
        _ => None,
    }
}

/// Canonical plate: full-width forms folded (`２９Ａ` is `29A`, as an East
/// Asian input method types it), separators removed, letters upper-cased;
/// Vietnamese plates must have the national shape.
pub fn normalize_plate(s: &str, country: &str) -> Option<String> {
    plate_form(s.chars().map(half_width), country)
}

/// The ASCII character of a full-width form (U+FF01–U+FF5E) and of the
/// ideographic space; any other character as it is. Only these: full
/// compatibility folding (NFKC) would also read circled, superscript and
/// other look-alike characters as plate characters.
fn half_width(c: char) -> char {
    match c {
        '\u{3000}' => ' ',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// [`normalize_plate`] of characters already folded (or not).
fn plate_form(s: impl Iterator<Item = char>, country: &str) -> Option<String> {
    let cleaned: String = s
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '_'))
        .flat_map(char::to_uppercase)
        .collect();
    if country == "VN" || country.is_empty() {
        let b = cleaned.as_bytes();
        if !cleaned.is_ascii() || b.len() < 7 || !b[..2].iter().all(u8::is_ascii_digit) {
            return None;
        }
        let letters = b[2..].iter().take_while(|c| c.is_ascii_uppercase()).count();
        if !(1..=2).contains(&letters) {
            return None;
        }
        let rest = &b[2 + letters..];
        let ok = rest.iter().all(u8::is_ascii_digit) && (4..=6).contains(&rest.len());
        ok.then_some(cleaned)
    } else {
        let n = cleaned.chars().count();
        ((2..=15).contains(&n) && cleaned.chars().all(char::is_alphanumeric)).then_some(cleaned)
    }
}

/// Canonical citizen id: exactly 12 digits.
pub fn normalize_citizen_id(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.to_owned())
}

/// Canonical HS code: 4, 6 or 8 digits, dots and spaces removed.
pub fn normalize_hs_code(s: &str) -> Option<String> {
    let d: String = s.chars().filter(|c| *c != '.' && *c != ' ').collect();
    (matches!(d.len(), 4 | 6 | 8) && d.bytes().all(|b| b.is_ascii_digit())).then_some(d)
}

/// Every canonical identifier a query string could mean (a tax code, a
/// plate of any country, a citizen id, an HS code).
pub fn identifier_forms(q: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        normalize_tax_code(q),
        normalize_plate(q, "VN"),
        normalize_plate(q, "XX"),
        // A foreign plate stored before full-width forms were folded (or
        // by an older peer) keeps them: queries find it as typed.
        plate_form(q.chars(), "XX"),
        normalize_citizen_id(q),
        normalize_hs_code(q),
    ]
    .into_iter()
    .flatten()
    .collect();
    v.sort();
    v.dedup();
    v
}

/// Canonical identifiers of an alert's subjects, as indexed.
pub fn subject_identifiers(a: &Alert) -> Vec<String> {
    let mut v: Vec<String> = a
        .subjects
        .iter()
        .filter_map(|s| match &s.kind {
            Some(subject::Kind::Business(b)) => Some(b.tax_code.clone()),
            Some(subject::Kind::Vehicle(v)) => Some(v.plate.clone()),
            Some(subject::Kind::Person(p)) => Some(p.citizen_id.clone()),
            Some(subject::Kind::Goods(g)) => Some(g.hs_code.clone()),
            None => None,
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000;

    fn good() -> Alert {
        Alert {
            reference: "hotline-2026-0001".into(),
            category: Category::Counterfeit as i32,
            severity: Severity::High as i32,
            title: "  Mỹ phẩm giả nhãn hiệu Ohui  ".into(),
            description:
                "Xe tải chở 120 thùng mỹ phẩm giả.\nNghi vận chuyển từ cửa khẩu Tân Thanh.".into(),
            location: Some(Location {
                province: "20".into(),
                commune: "Tân Thanh".into(),
                address: "QL1A".into(),
            }),
            observed_unix_ms: NOW - 3_600_000,
            subjects: vec![
                Subject {
                    kind: Some(subject::Kind::Vehicle(Vehicle {
                        plate: "12c-045.67".into(),
                        country: String::new(),
                        description: "xe tải".into(),
                    })),
                },
                Subject {
                    kind: Some(subject::Kind::Business(Business {
                        tax_code: "0101234567001".into(),
                        name: "Công ty TNHH ABC".into(),
                        address: String::new(),
                    })),
                },
                Subject {
                    kind: Some(subject::Kind::Person(Person {
                        citizen_id: "001085012345".into(),
                        full_name: "Nguyễn Văn A".into(),
                    })),
                },
                Subject {
                    kind: Some(subject::Kind::Goods(Goods {
                        hs_code: "3304.99.90".into(),
                        description: "Kem dưỡng da".into(),
                        quantity: 120.0,
                        unit: "thùng".into(),
                        estimated_value_vnd: 350_000_000,
                    })),
                },
            ],
            attachments: vec![Attachment {
                sha256: vec![7; 32],
                media_type: "image/JPEG".into(),
                size_bytes: 1234,
                name: "anh.jpg".into(),
            }],
            concerned_provinces: vec!["24".into(), "01".into()],
            redacted: vec![],
        }
    }

    #[test]
    fn a_good_alert_is_normalised() {
        let v = validate_alert(Some(&good()), NOW)
            .expect("valid")
            .into_inner();
        assert_eq!(v.title, "Mỹ phẩm giả nhãn hiệu Ohui");
        assert_eq!(v.concerned_provinces, ["01", "24"]);
        assert_eq!(
            subject_identifiers(&v),
            ["001085012345", "0101234567-001", "12C04567", "33049990"]
        );
        assert_eq!(v.attachments[0].media_type, "image/jpeg");
    }

    fn errors(a: &Alert) -> Vec<String> {
        match validate_alert(Some(a), NOW) {
            Ok(_) => vec![],
            Err(InvalidInput(e)) => e.into_iter().map(|e| e.field).collect(),
        }
    }

    /// Table: one broken field per row; the error names exactly that field.
    #[test]
    fn each_invalid_field_is_named() {
        type Breaker = fn(&mut Alert);
        let table: &[(&str, Breaker)] = &[
            ("alert.reference", |a| a.reference.clear()),
            ("alert.reference", |a| a.reference = "has space".into()),
            ("alert.reference", |a| a.reference = "x".repeat(129)),
            ("alert.category", |a| a.category = 0),
            ("alert.category", |a| a.category = 99),
            ("alert.severity", |a| a.severity = 0),
            ("alert.severity", |a| a.severity = -1),
            ("alert.title", |a| a.title = "   ".into()),
            ("alert.title", |a| a.title = "x".repeat(301)),
            ("alert.title", |a| a.title = "two\nlines".into()),
            ("alert.title", |a| a.title = "\u{200B}\u{FEFF}".into()),
            ("alert.title", |a| a.title = "one\u{2028}two".into()),
            ("alert.title", |a| a.title = "Ohui \u{202E}iuhO".into()),
            ("alert.description", |a| a.description = "a\u{2069}b".into()),
            ("alert.description", |a| {
                a.description = "para\u{2029}graph".into()
            }),
            ("alert.description", |a| a.description = "bell\u{7}".into()),
            ("alert.description", |a| a.description = "x".repeat(20_001)),
            ("alert.location", |a| a.location = None),
            ("alert.location.province", |a| {
                a.location.as_mut().unwrap().province = "02".into()
            }),
            ("alert.location.province", |a| {
                a.location.as_mut().unwrap().province.clear()
            }),
            ("alert.location.commune", |a| {
                a.location.as_mut().unwrap().commune = "x".repeat(201)
            }),
            ("alert.location.address", |a| {
                a.location.as_mut().unwrap().address = "x".repeat(501)
            }),
            ("alert.observed_unix_ms", |a| a.observed_unix_ms = 0),
            ("alert.observed_unix_ms", |a| {
                a.observed_unix_ms = 1_700_000_000
            }),
            ("alert.observed_unix_ms", |a| {
                a.observed_unix_ms = NOW + 6 * 60 * 1000
            }),
            ("alert.subjects", |a| {
                a.subjects = vec![Subject::default(); 101]
            }),
            ("alert.subjects[0]", |a| {
                a.subjects[0] = Subject { kind: None }
            }),
            ("alert.subjects[0].vehicle.plate", |a| set_plate(a, "ABC")),
            ("alert.subjects[0].vehicle.country", |a| {
                set_country(a, "Viet Nam")
            }),
            ("alert.subjects[0].vehicle.country", |a| {
                set_country(a, "UK")
            }),
            ("alert.subjects[0].vehicle.country", |a| {
                set_country(a, "XX")
            }),
            ("alert.subjects[0].vehicle.description", |a| {
                set_vdesc(a, &"x".repeat(201))
            }),
            ("alert.subjects[1].business.tax_code", |a| {
                set_tax(a, "12345")
            }),
            ("alert.subjects[1].business.tax_code", |a| {
                set_tax(a, "01012345ab")
            }),
            ("alert.subjects[1].business.name", |a| {
                set_bname(a, &"x".repeat(301))
            }),
            ("alert.subjects[2].person.citizen_id", |a| {
                set_cid(a, "12345678901")
            }),
            ("alert.subjects[2].person.full_name", |a| {
                set_pname(a, &"x".repeat(201))
            }),
            ("alert.subjects[3].goods.hs_code", |a| {
                goods(a).hs_code = "33".into()
            }),
            ("alert.subjects[3].goods.description", |a| {
                goods(a).description.clear()
            }),
            ("alert.subjects[3].goods.quantity", |a| {
                goods(a).quantity = f64::NAN
            }),
            ("alert.subjects[3].goods.quantity", |a| {
                goods(a).quantity = -1.0
            }),
            ("alert.subjects[3].goods.quantity", |a| {
                goods(a).quantity = 2e12
            }),
            ("alert.subjects[3].goods.estimated_value_vnd", |a| {
                goods(a).estimated_value_vnd = u64::MAX
            }),
            ("alert.subjects[3].goods.unit", |a| goods(a).unit.clear()),
            ("alert.attachments", |a| {
                a.attachments = vec![Attachment::default(); 51]
            }),
            ("alert.attachments[0].sha256", |a| {
                a.attachments[0].sha256 = vec![1; 31]
            }),
            ("alert.attachments[0].media_type", |a| {
                a.attachments[0].media_type = "jpeg".into()
            }),
            ("alert.attachments[0].size_bytes", |a| {
                a.attachments[0].size_bytes = 0
            }),
            ("alert.attachments[0].name", |a| {
                a.attachments[0].name = "x".repeat(256)
            }),
            ("alert.concerned_provinces[1]", |a| {
                a.concerned_provinces[1] = "99".into()
            }),
            ("alert.concerned_provinces[1]", |a| {
                a.concerned_provinces[1] = "24".into()
            }),
        ];
        for (field, breaker) in table {
            let mut a = good();
            breaker(&mut a);
            assert_eq!(errors(&a), vec![field.to_string()], "breaking {field}");
        }
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let mut a = good();
        a.reference.clear();
        a.category = 0;
        set_cid(&mut a, "1");
        assert_eq!(
            errors(&a),
            [
                "alert.reference",
                "alert.category",
                "alert.subjects[2].person.citizen_id"
            ]
        );
        assert_eq!(validate_alert(None, NOW).unwrap_err().0[0].field, "alert");
    }

    #[test]
    fn identifier_forms_cover_each_kind() {
        assert!(identifier_forms("0101234567001").contains(&"0101234567-001".to_owned()));
        assert!(identifier_forms("29a-123.45").contains(&"29A12345".to_owned()));
        assert!(identifier_forms("001085012345").contains(&"001085012345".to_owned()));
        assert!(identifier_forms("3304.99.90").contains(&"33049990".to_owned()));
        assert_eq!(
            normalize_plate("桂A 12345", "CN").as_deref(),
            Some("桂A12345")
        );
        assert_eq!(
            normalize_plate("29LD-123.45", "VN").as_deref(),
            Some("29LD12345")
        );
        // Full-width forms are the same plate, Vietnamese or foreign.
        assert_eq!(
            normalize_plate("２９Ａ－１２３．４５", "VN").as_deref(),
            Some("29A12345")
        );
        assert_eq!(
            normalize_plate("桂Ａ １２３４５", "CN").as_deref(),
            Some("桂A12345")
        );
        let forms = identifier_forms("桂Ａ１２３４５");
        assert!(forms.contains(&"桂A12345".to_owned()), "{forms:?}");
        assert!(
            forms.contains(&"桂Ａ１２３４５".to_owned()),
            "as stored before: {forms:?}"
        );
        // Look-alikes that are not full-width forms stay refused.
        assert_eq!(normalize_plate("②⑨Ⓐ12345", "VN"), None);
        assert_eq!(normalize_plate("29A-123.4⁵", "VN"), None);
    }

    fn kind(a: &mut Alert, i: usize) -> &mut subject::Kind {
        a.subjects[i].kind.as_mut().unwrap()
    }
    fn set_plate(a: &mut Alert, v: &str) {
        if let subject::Kind::Vehicle(x) = kind(a, 0) {
            x.plate = v.into()
        }
    }
    fn set_country(a: &mut Alert, v: &str) {
        if let subject::Kind::Vehicle(x) = kind(a, 0) {
            x.country = v.into()
        }
    }
    fn set_vdesc(a: &mut Alert, v: &str) {
        if let subject::Kind::Vehicle(x) = kind(a, 0) {
            x.description = v.into()
        }
    }
    fn set_tax(a: &mut Alert, v: &str) {
        if let subject::Kind::Business(x) = kind(a, 1) {
            x.tax_code = v.into()
        }
    }
    fn set_bname(a: &mut Alert, v: &str) {
        if let subject::Kind::Business(x) = kind(a, 1) {
            x.name = v.into()
        }
    }
    fn set_cid(a: &mut Alert, v: &str) {
        if let subject::Kind::Person(x) = kind(a, 2) {
            x.citizen_id = v.into()
        }
    }
    fn set_pname(a: &mut Alert, v: &str) {
        if let subject::Kind::Person(x) = kind(a, 2) {
            x.full_name = v.into()
        }
    }
    fn goods(a: &mut Alert) -> &mut Goods {
        match kind(a, 3) {
            subject::Kind::Goods(g) => g,
            _ => unreachable!(),
        }
    }
}
