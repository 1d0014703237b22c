//! The sharing rules: design.md "Sharing rules (the agreement)" and issue 4
//! item 4. One table row per rule feature, the shipped northern agreement on
//! realistic alerts, and a property test of `decide`'s invariants.

use std::collections::BTreeMap;

use lienthong_core::agreement::{
    Agreement, AgreementError, Handling, agreement_hash, commit_field, decide, verify_commitment,
};
use lienthong_core::proto::{
    self as pb, Alert, Business, Location, Person, Subject, Vehicle, subject::Kind,
};
use proptest::prelude::*;

pub const SHIPPED: &str = include_str!("../../../../deploy/federation/agreement-bac-bo-11.toml");

pub fn eleven() -> Vec<String> {
    [
        "01", "04", "15", "19", "20", "22", "24", "25", "31", "33", "37",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A test agreement with one rule per feature.
const TABLE_AGREEMENT: &str = r#"
[[rules]]
name = "critical"
when = { min_severity = "critical" }
audience = "all"
handling = "H1"
response_deadline_hours = 24

[[rules]]
name = "smuggling-high"
when = { categories = ["smuggling"], min_severity = "high" }
audience = { neighbours_of = { observed = true, concerned = true } }
handling = "H1"
response_deadline_hours = 72
redact = [{ field = "person.citizen_id", except_to = ["observed", "concerned"] }]

[[rules]]
name = "concerns-hanoi"
when = { provinces = ["01"] }
audience = { members = ["01", "75"] }
handling = "H2"

[[rules]]
name = "fraud-concerned"
when = { categories = ["trade_fraud"] }
audience = { neighbours_of = { concerned = true } }
handling = "H2"
redact = [{ field = "business.tax_code", except_to = ["24"] }]

[[rules]]
name = "ip-author-only"
when = { categories = ["intellectual_property"] }
audience = "author_only"
handling = "H3"

[[rules]]
name = "default"
audience = { neighbours_of = { observed = true } }
handling = "H0"

[neighbours]
"15" = ["25"]
"20" = ["04", "19", "22", "24"]
"24" = ["01", "19", "20", "22", "31", "33"]
"31" = ["22", "24", "33"]
"#;

pub fn alert(
    cat: i32,
    sev: i32,
    observed: &str,
    concerned: &[&str],
    subjects: Vec<Subject>,
) -> Alert {
    Alert {
        reference: "ref-1".into(),
        category: cat,
        severity: sev,
        title: "Phát hiện vi phạm".into(),
        location: Some(Location {
            province: observed.into(),
            ..Default::default()
        }),
        observed_unix_ms: 1_795_000_000_000,
        subjects,
        concerned_provinces: concerned.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub fn person(id: &str, name: &str) -> Subject {
    Subject {
        kind: Some(Kind::Person(Person {
            citizen_id: id.into(),
            full_name: name.into(),
        })),
    }
}

fn business(tax: &str) -> Subject {
    Subject {
        kind: Some(Kind::Business(Business {
            tax_code: tax.into(),
            name: "Công ty TNHH Mỹ phẩm Hoa Mai".into(),
            ..Default::default()
        })),
    }
}

fn vehicle(plate: &str) -> Subject {
    Subject {
        kind: Some(Kind::Vehicle(Vehicle {
            plate: plate.into(),
            ..Default::default()
        })),
    }
}

const SMUGGLING: i32 = pb::Category::Smuggling as i32;
const COUNTERFEIT: i32 = pb::Category::Counterfeit as i32;
const FRAUD: i32 = pb::Category::TradeFraud as i32;
const IP: i32 = pb::Category::IntellectualProperty as i32;
const FOOD: i32 = pb::Category::FoodSafety as i32;
const OTHER: i32 = pb::Category::Other as i32;
const LOW: i32 = pb::Severity::Low as i32;
const MEDIUM: i32 = pb::Severity::Medium as i32;
const HIGH: i32 = pb::Severity::High as i32;
const CRITICAL: i32 = pb::Severity::Critical as i32;

fn codes(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

fn redactions(rows: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    rows.iter()
        .map(|(r, f)| (r.to_string(), f.iter().map(|s| s.to_string()).collect()))
        .collect()
}

struct Row {
    what: &'static str,
    author: &'static str,
    alert: Alert,
    rule: &'static str,
    audience: &'static str,
    redactions: BTreeMap<String, Vec<String>>,
}

#[test]
fn one_row_per_rule_feature() {
    let a = Agreement::from_toml(TABLE_AGREEMENT).expect("table agreement is valid");
    let members = eleven();
    let rows = vec![
        Row {
            what: "severity threshold met: critical goes to every member",
            author: "20",
            alert: alert(OTHER, CRITICAL, "20", &[], vec![]),
            rule: "critical",
            audience: "01 04 15 19 20 22 24 25 31 33 37",
            redactions: BTreeMap::new(),
        },
        Row {
            what: "category + severity match; neighbours of the observed province",
            author: "15",
            alert: alert(SMUGGLING, HIGH, "15", &[], vec![]),
            rule: "smuggling-high",
            audience: "15 25",
            redactions: BTreeMap::new(),
        },
        Row {
            what: "severity below the threshold falls through to the default",
            author: "15",
            alert: alert(SMUGGLING, MEDIUM, "15", &[], vec![]),
            rule: "default",
            audience: "15 25",
            redactions: BTreeMap::new(),
        },
        Row {
            what: "category mismatch falls through",
            author: "20",
            alert: alert(COUNTERFEIT, HIGH, "20", &[], vec![]),
            rule: "default",
            audience: "04 19 20 22 24",
            redactions: BTreeMap::new(),
        },
        Row {
            what: "province match through a concerned province; non-member 75 filtered out",
            author: "22",
            alert: alert(OTHER, LOW, "22", &["01"], vec![]),
            rule: "concerns-hanoi",
            audience: "01 22",
            redactions: BTreeMap::new(),
        },
        Row {
            what: "province match through the observed province",
            author: "01",
            alert: alert(OTHER, LOW, "01", &[], vec![]),
            rule: "concerns-hanoi",
            audience: "01",
            redactions: BTreeMap::new(),
        },
        Row {
            what: "neighbours of the concerned provinces only; tax code only to 24",
            author: "20",
            alert: alert(FRAUD, MEDIUM, "20", &["31"], vec![business("0101234567")]),
            rule: "fraud-concerned",
            audience: "20 22 24 31 33",
            redactions: redactions(&[
                ("22", &["business.tax_code"]),
                ("31", &["business.tax_code"]),
                ("33", &["business.tax_code"]),
            ]),
        },
        Row {
            what: "author only",
            author: "24",
            alert: alert(IP, HIGH, "24", &["20"], vec![]),
            rule: "ip-author-only",
            audience: "24",
            redactions: BTreeMap::new(),
        },
        Row {
            what: "redaction per recipient: citizen id only to observed and concerned",
            author: "20",
            alert: alert(
                SMUGGLING,
                HIGH,
                "20",
                &["24"],
                vec![person("001234567890", "Nguyễn Văn A")],
            ),
            rule: "smuggling-high",
            audience: "01 04 19 20 22 24 31 33",
            redactions: redactions(&[
                ("01", &["person.citizen_id"]),
                ("04", &["person.citizen_id"]),
                ("19", &["person.citizen_id"]),
                ("22", &["person.citizen_id"]),
                ("31", &["person.citizen_id"]),
                ("33", &["person.citizen_id"]),
            ]),
        },
        Row {
            what: "a field the alert does not carry is not listed as redacted",
            author: "20",
            alert: alert(SMUGGLING, HIGH, "20", &["24"], vec![vehicle("12C12345")]),
            rule: "smuggling-high",
            audience: "01 04 19 20 22 24 31 33",
            redactions: BTreeMap::new(),
        },
        Row {
            what: "the author is always in the audience, even far from the alert",
            author: "37",
            alert: alert(SMUGGLING, HIGH, "15", &[], vec![]),
            rule: "smuggling-high",
            audience: "15 25 37",
            redactions: BTreeMap::new(),
        },
        Row {
            what: "unspecified category matches no categorised rule: default",
            author: "20",
            alert: alert(0, HIGH, "20", &[], vec![]),
            rule: "default",
            audience: "04 19 20 22 24",
            redactions: BTreeMap::new(),
        },
        Row {
            what: "unknown enum values never panic and meet no threshold",
            author: "20",
            alert: alert(99, 99, "20", &[], vec![]),
            rule: "default",
            audience: "04 19 20 22 24",
            redactions: BTreeMap::new(),
        },
        Row {
            what: "neighbour lists are read both ways (19 lists nobody, 20 and 24 list 19)",
            author: "19",
            alert: alert(OTHER, LOW, "19", &[], vec![]),
            rule: "default",
            audience: "19 20 24",
            redactions: BTreeMap::new(),
        },
    ];
    for row in rows {
        let d = decide(&a, &members, row.author, &row.alert);
        assert_eq!(d.rule, row.rule, "{}", row.what);
        assert_eq!(d.audience, codes(row.audience), "{}", row.what);
        assert_eq!(d.redactions, row.redactions, "{}", row.what);
    }
}

#[test]
fn handling_and_deadline_come_from_the_deciding_rule() {
    let a = Agreement::from_toml(TABLE_AGREEMENT).unwrap();
    let d = decide(
        &a,
        &eleven(),
        "15",
        &alert(SMUGGLING, HIGH, "15", &[], vec![]),
    );
    assert_eq!(
        (d.handling, d.response_deadline_hours),
        (Handling::H1, Some(72))
    );
    let d = decide(&a, &eleven(), "15", &alert(OTHER, LOW, "15", &[], vec![]));
    assert_eq!(
        (d.handling, d.response_deadline_hours),
        (Handling::H0, None)
    );
}

/// The example of issue 4: counterfeit cosmetics observed in 20 Lạng Sơn,
/// heading for 24 Bắc Ninh and 01 Hà Nội.
#[test]
fn shipped_agreement_counterfeit_cosmetics_from_lang_son() {
    let a = Agreement::from_toml(SHIPPED).expect("shipped agreement is valid");
    let al = alert(
        COUNTERFEIT,
        HIGH,
        "20",
        &["24", "01"],
        vec![person("020123456789", "Trần Thị B"), vehicle("12C-123.45")],
    );
    let d = decide(&a, &eleven(), "20", &al);
    assert_eq!(d.rule, "border-crime-high-to-neighbours");
    // 20, 24, 01 and everything bordering them: all but 15 Lào Cai.
    assert_eq!(d.audience, codes("01 04 19 20 22 24 25 31 33 37"));
    assert_eq!(d.handling, Handling::H1);
    assert_eq!(d.response_deadline_hours, Some(72));
    let both = ["person.citizen_id", "person.full_name"];
    assert_eq!(
        d.redactions,
        redactions(&[
            ("04", &both),
            ("19", &both),
            ("22", &both),
            ("25", &both),
            ("31", &both),
            ("33", &both),
            ("37", &both),
        ])
    );
}

#[test]
fn shipped_agreement_on_other_realistic_alerts() {
    let a = Agreement::from_toml(SHIPPED).unwrap();
    let m = eleven();
    // Critical smuggling at the Lào Cai gate: everyone, citizen id only to 15 and 25.
    let d = decide(
        &a,
        &m,
        "15",
        &alert(
            SMUGGLING,
            CRITICAL,
            "15",
            &["25"],
            vec![person("015099000111", "")],
        ),
    );
    assert_eq!(d.rule, "critical-to-all");
    assert_eq!(d.audience, m);
    assert_eq!(d.redactions.len(), 9);
    assert!(!d.redactions.contains_key("25") && !d.redactions.contains_key("15"));
    // Food safety at low severity still reaches everyone, as H0.
    let d = decide(&a, &m, "31", &alert(FOOD, LOW, "31", &[], vec![]));
    assert_eq!(
        (d.rule.as_str(), d.audience.len(), d.handling),
        ("food-safety-to-all", 11, Handling::H0)
    );
    // Invoice fraud by a Hưng Yên company seen in Quảng Ninh: 33 and its neighbours.
    let d = decide(
        &a,
        &m,
        "22",
        &alert(FRAUD, MEDIUM, "22", &["33"], vec![business("0900123456")]),
    );
    assert_eq!(d.rule, "fraud-to-concerned");
    assert_eq!(d.audience, codes("01 22 24 31 33 37"));
    assert_eq!(
        d.redactions.keys().cloned().collect::<Vec<_>>(),
        codes("01 24 31 37")
    );
    // Medium smuggling seen in Quảng Ninh: the default.
    let d = decide(&a, &m, "22", &alert(SMUGGLING, MEDIUM, "22", &[], vec![]));
    assert_eq!(d.rule, "default-concerned-and-neighbours");
    assert_eq!(d.audience, codes("20 22 24 31"));
}

#[test]
fn unknown_fields_and_values_are_errors_that_name_them() {
    let cases = [
        (
            "[[rules]]\nname = \"d\"\naudience = \"all\"\nhandling = \"H0\"\nshare_with = \"all\"\n",
            "share_with",
        ),
        (
            "[[rules]]\nname = \"d\"\naudience = \"all\"\nhandling = \"H0\"\nwhen = { category = [\"smuggling\"] }\n",
            "category",
        ),
        (
            "[[rules]]\nname = \"d\"\naudience = \"all\"\nhandling = \"H0\"\nwhen = { categories = [\"smugling\"] }\n",
            "smugling",
        ),
        (
            "[[rules]]\nname = \"d\"\naudience = \"everyone\"\nhandling = \"H0\"\n",
            "everyone",
        ),
        (
            "[[rules]]\nname = \"d\"\naudience = \"all\"\nhandling = \"H4\"\n",
            "H4",
        ),
        (
            "[[rules]]\nname = \"d\"\naudience = \"all\"\nhandling = \"H0\"\nredact = [{ field = \"person.dob\" }]\n",
            "person.dob",
        ),
        (
            "[[rules]]\nname = \"d\"\naudience = \"all\"\nhandling = \"H0\"\nredact = [{ field = \"vehicle.plate\", except_to = [\"neighbours\"] }]\n",
            "neighbours",
        ),
        (
            "[[rules]]\nname = \"d\"\naudience = { neighbours_of = { observd = true } }\nhandling = \"H0\"\n",
            "observd",
        ),
        (
            "escalation = 1\n[[rules]]\nname = \"d\"\naudience = \"all\"\nhandling = \"H0\"\n",
            "escalation",
        ),
    ];
    for (text, named) in cases {
        match Agreement::from_toml(text) {
            Err(AgreementError::Parse(msg)) => assert!(msg.contains(named), "{named}: {msg}"),
            other => panic!("{named}: expected a parse error, got {other:?}"),
        }
    }
}

#[test]
fn inconsistent_agreements_report_every_problem_at_once() {
    let text = r#"
[[rules]]
name = "catch-all-too-early"
audience = { members = ["01", "99"] }
handling = "H0"

[[rules]]
name = "catch-all-too-early"
when = { provinces = ["02"] }
audience = { neighbours_of = {} }
handling = "H0"
response_deadline_hours = 0
redact = [{ field = "vehicle.plate", except_to = ["01"] }]

[neighbours]
"01" = ["01", "19"]
"#;
    let Err(AgreementError::Invalid(problems)) = Agreement::from_toml(text) else {
        panic!("expected validation problems");
    };
    let all = problems.join("\n");
    for needle in [
        "rules[0].when: matches every alert",
        "rules[0].audience.members[1]: \"99\"",
        "rules[1].name: \"catch-all-too-early\" is used",
        "rules[1].when: the last rule must be the default",
        "rules[1].when.provinces[0]: \"02\"",
        "rules[1].audience.neighbours_of: selects nobody",
        "rules[1].response_deadline_hours",
        "neighbours.\"01\"[0]: a province does not border itself",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert_eq!(problems.len(), 8, "{all}");
    assert!(matches!(
        Agreement::from_toml("rules = []"),
        Err(AgreementError::Invalid(p)) if p[0].contains("add at least a default rule")
    ));
}

/// The canonical encoding documented in the module docs, pinned byte for
/// byte so another implementation can check itself against it.
#[test]
fn canonical_bytes_and_hash_are_pinned() {
    let a = Agreement::from_toml(
        r#"
[[rules]]
name = "hàng-giả"
when = { categories = ["counterfeit"], min_severity = "high" }
audience = { neighbours_of = { observed = true } }
handling = "H1"
redact = [{ field = "person.citizen_id", except_to = ["concerned", "01"] }]
response_deadline_hours = 72

[[rules]]
name = "default"
audience = "author_only"
handling = "H2"

[neighbours]
"24" = ["01"]
"01" = ["24"]
"#,
    )
    .unwrap();
    let expected = concat!(
        r#"{"neighbours":{"01":["24"],"24":["01"]},"rules":["#,
        r#"{"audience":{"neighbours_of":{"concerned":false,"observed":true}},"handling":"H1","name":"hàng-giả","#,
        r#""redact":[{"except_to":["concerned","01"],"field":"person.citizen_id"}],"response_deadline_hours":72,"#,
        r#""when":{"categories":["counterfeit"],"min_severity":"high","provinces":[]}},"#,
        r#"{"audience":"author_only","handling":"H2","name":"default","redact":[],"response_deadline_hours":null,"#,
        r#""when":{"categories":[],"min_severity":null,"provinces":[]}}]}"#
    );
    assert_eq!(String::from_utf8(a.canonical_bytes()).unwrap(), expected);
    use sha2::{Digest, Sha256};
    assert_eq!(
        agreement_hash(&a),
        <[u8; 32]>::from(Sha256::digest(expected.as_bytes()))
    );

    let mut b = a.clone();
    b.rules[0].handling = Handling::H2;
    assert_ne!(agreement_hash(&a), agreement_hash(&b));
    // Members listing: the shipped agreement has a stable hash across parses.
    assert_eq!(
        agreement_hash(&Agreement::from_toml(SHIPPED).unwrap()),
        agreement_hash(&Agreement::from_toml(SHIPPED).unwrap())
    );
}

#[test]
fn commitments_open_only_with_the_right_value_and_salt() {
    let salt = [7u8; 32];
    let c = commit_field(b"001234567890", &salt);
    // Independently computed: sha256(b"lienthong:redact:v1\n" + bytes([7]*32) + b"001234567890").
    assert_eq!(
        hex::encode(c),
        "29ce218b5a262f8e53ae2f34260d5e86cea5c796aabd5220acb2f77ef724f82e"
    );
    assert!(verify_commitment(&c, b"001234567890", &salt));
    assert!(!verify_commitment(&c, b"001234567891", &salt));
    assert!(!verify_commitment(&c, b"001234567890", &[8u8; 32]));
    // Same value, different salt: unlinkable commitments.
    assert_ne!(c, commit_field(b"001234567890", &[8u8; 32]));
}

fn arb_code() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(lienthong_core::provinces::PROVINCES.map(|(c, _)| c.to_string()).to_vec()),
        1 => "\\PC{0,4}",
    ]
}

fn arb_subject() -> impl Strategy<Value = Subject> {
    prop_oneof![
        ("\\PC{0,13}", "\\PC{0,10}").prop_map(|(i, n)| person(&i, &n)),
        "\\PC{0,10}".prop_map(|t| business(&t)),
        "\\PC{0,10}".prop_map(|p| vehicle(&p)),
        Just(Subject { kind: None }),
    ]
}

fn arb_alert() -> impl Strategy<Value = Alert> {
    (
        prop_oneof![4 => 0i32..9, 1 => any::<i32>()],
        prop_oneof![4 => 0i32..5, 1 => any::<i32>()],
        prop::option::of(arb_code()),
        prop::collection::vec(arb_code(), 0..6),
        prop::collection::vec(arb_subject(), 0..4),
        "\\PC{0,5}",
    )
        .prop_map(
            |(cat, sev, observed, concerned, subjects, description)| Alert {
                category: cat,
                severity: sev,
                location: observed.map(|p| Location {
                    province: p,
                    address: "x".into(),
                    ..Default::default()
                }),
                concerned_provinces: concerned,
                subjects,
                description,
                ..Default::default()
            },
        )
}

proptest! {
    /// Whatever the alert, members and author: `decide` returns, and the
    /// audience is sorted, unique, holds only members (plus the author) and
    /// always the author; redactions name only audience members, never the
    /// author.
    #[test]
    fn decide_is_total_and_keeps_its_invariants(
        which in 0usize..2,
        members in prop::collection::vec(arb_code(), 0..12),
        author in arb_code(),
        al in arb_alert(),
    ) {
        let a = Agreement::from_toml(if which == 0 { SHIPPED } else { TABLE_AGREEMENT }).unwrap();
        let d = decide(&a, &members, &author, &al);
        prop_assert!(d.audience.windows(2).all(|w| w[0] < w[1]), "sorted and unique: {:?}", d.audience);
        prop_assert!(d.audience.contains(&author));
        prop_assert!(d.audience.iter().all(|c| c == &author || members.contains(c)));
        prop_assert!(!d.redactions.contains_key(&author));
        prop_assert!(d.redactions.keys().all(|r| d.audience.contains(r)));
        prop_assert!(a.rules.iter().any(|r| r.name == d.rule));
    }
}
