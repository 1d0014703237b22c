//! The sharing rules (the agreement) as data, and the one pure function that
//! applies them to an alert.
//!
//! ```text
//! Agreement (TOML, carried in the signed manifest)
//!   rules: [Rule]            first match wins; the last rule is the default
//!   neighbours: code → codes land borders, for "neighbours of" audiences
//!
//! decide(&Agreement, members, author, &Alert) → Decision
//!   { rule, audience, redactions per recipient, handling, deadline }
//! ```
//!
//! # Rules
//!
//! A [`Rule`] matches when every criterion it states holds (an empty
//! criterion always holds):
//! - `categories`: the alert's category is one of them;
//! - `min_severity`: the alert's severity is at least this;
//! - `provinces`: the province where it was observed, or one of the
//!   provinces it concerns, is one of them.
//!
//! The first matching rule decides. The last rule must match everything
//! (no criteria) so that every alert gets a decision, and no earlier rule
//! may match everything, since the rules after it could never apply; both
//! are checked when the agreement is loaded, together with every code it
//! names. Unknown fields anywhere are an error, never ignored.
//!
//! # Audience
//!
//! [`Audience`] says who receives the entry. Whatever the rule says, the
//! decided audience holds only current members and always holds the author,
//! sorted and without duplicates, the form `EntryBody.audience` requires.
//! Neighbour lists are read symmetrically: if A lists B then B borders A,
//! so a one-sided typo cannot hide a province from its neighbour.
//!
//! # Redaction by salted commitment
//!
//! A [`Redaction`] withholds one field (e.g. `person.citizen_id`) from every
//! recipient except those it names. The intended scheme, so that every
//! recipient verifies the *same* author signature:
//!
//! 1. For each value of a redactable field the author draws a fresh random
//!    32-byte salt and computes `c = SHA-256("lienthong:redact:v1\n" ‖ salt ‖
//!    value)` ([`commit_field`]).
//! 2. The author signs one entry body in which every redactable value the
//!    decision names for anyone is replaced by its commitment `c`.
//! 3. Each recipient receives that signed body plus, as a side-car, the
//!    `(salt, value)` pairs of the fields it may see; it checks each with
//!    [`verify_commitment`]. A recipient that may not see a field gets only
//!    the commitment: it learns nothing about the value (the salt is
//!    secret and random) but can still verify the signature over the whole,
//!    and can later be shown the value by the author and check it.
//!
//! Only the primitives live here; how the side-car travels is the
//! federation crate's business.
//!
//! # Canonical encoding and [`agreement_hash`]
//!
//! `agreement_hash = SHA-256(canonical_bytes)`, where the canonical bytes
//! are the agreement as compact JSON (no whitespace, UTF-8, `serde_json`
//! string escaping: only `"`, `\` and control characters are escaped),
//! with object keys in ascending byte order, which makes it RFC 8785 (JCS)
//! output since every number is an integer:
//!
//! ```text
//! {"neighbours":{"01":["19","24"],…},
//!  "rules":[{"audience":A,"handling":"H1","name":"…",
//!            "redact":[{"except_to":["observed","01"],"field":"person.citizen_id"}],
//!            "response_deadline_hours":72|null,
//!            "when":{"categories":["smuggling"],"min_severity":"high"|null,"provinces":[]}}]}
//! A = "all" | "author_only" | {"members":["01"]}
//!   | {"neighbours_of":{"concerned":true,"observed":false}}
//! ```
//!
//! Lists keep the order they were written in (the rules' order is their
//! meaning; for the others the document as signed is what counts); the
//! neighbours map is sorted by code. The node records this hash in every
//! entry so an auditor can recompute each sharing decision.

use std::collections::{BTreeMap, BTreeSet};

use lienthong_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::provinces::is_province;

/// Domain separation tag for field commitments.
pub const REDACT_DOMAIN: &[u8] = b"lienthong:redact:v1\n";

/// The sharing rules. Field order is alphabetical on purpose: it is the key
/// order of the canonical JSON (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agreement {
    /// Deadlines and escalation for coordination requests. Omitted from the
    /// canonical form when absent, so agreements written before it keep
    /// their hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordination: Option<Coordination>,
    /// Province code → the province codes it shares a land border with.
    #[serde(default)]
    pub neighbours: BTreeMap<String, Vec<String>>,
    /// Evaluated in order; the first that matches decides.
    pub rules: Vec<Rule>,
}

/// What the agreement says about assistance requests. TOML:
///
/// ```toml
/// [coordination]
/// assistance_deadline_hours = 72
/// escalate_to = ["01"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coordination {
    /// Hours the province asked has to answer an assistance request
    /// (default [`DEFAULT_ASSISTANCE_DEADLINE_HOURS`]). A requester may ask
    /// for an earlier deadline, never a later one.
    #[serde(default)]
    pub assistance_deadline_hours: Option<u32>,
    /// Members who also receive the escalation of an overdue request (e.g.
    /// the member that reports to the national steering committee).
    #[serde(default)]
    pub escalate_to: Vec<String>,
}

/// Answer time for assistance requests when the agreement sets none.
pub const DEFAULT_ASSISTANCE_DEADLINE_HOURS: u32 = 72;

impl Agreement {
    /// Hours an assistance request may stay unanswered.
    pub fn assistance_deadline_hours(&self) -> u32 {
        self.coordination
            .as_ref()
            .and_then(|c| c.assistance_deadline_hours)
            .unwrap_or(DEFAULT_ASSISTANCE_DEADLINE_HOURS)
    }
    /// Members to notify of overdue requests.
    pub fn escalate_to(&self) -> &[String] {
        self.coordination
            .as_ref()
            .map_or(&[][..], |c| c.escalate_to.as_slice())
    }
}

/// One sharing rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Who receives entries this rule decides.
    pub audience: Audience,
    /// What recipients may do with them.
    pub handling: Handling,
    /// A short unique name, recorded in decisions and shown to operators.
    pub name: String,
    /// Fields withheld from some recipients.
    #[serde(default)]
    pub redact: Vec<Redaction>,
    /// For alerts that ask for action: hours the recipients have to answer.
    #[serde(default)]
    pub response_deadline_hours: Option<u32>,
    /// When the rule applies; omitted means always (the default rule).
    #[serde(default)]
    pub when: Match,
}

/// What an alert must be for a rule to apply. Empty criteria always hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The alert's category is one of these.
    #[serde(default)]
    pub categories: Vec<Category>,
    /// The alert's severity is at least this.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// The observed province or a concerned province is one of these.
    #[serde(default)]
    pub provinces: Vec<String>,
}

impl Match {
    fn is_catch_all(&self) -> bool {
        self.categories.is_empty() && self.min_severity.is_none() && self.provinces.is_empty()
    }
}

/// Violation category, by the snake_case name of the proto enum value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Category {
    Smuggling,
    TradeFraud,
    Counterfeit,
    IntellectualProperty,
    ProhibitedGoods,
    FoodSafety,
    PoorQualityGoods,
    Other,
}

impl Category {
    /// The category of a proto enum value; `None` for unspecified or unknown
    /// values, which then match no rule that names categories.
    pub fn from_proto(v: i32) -> Option<Self> {
        Some(match pb::Category::try_from(v).ok()? {
            pb::Category::Unspecified => return None,
            pb::Category::Smuggling => Self::Smuggling,
            pb::Category::TradeFraud => Self::TradeFraud,
            pb::Category::Counterfeit => Self::Counterfeit,
            pb::Category::IntellectualProperty => Self::IntellectualProperty,
            pb::Category::ProhibitedGoods => Self::ProhibitedGoods,
            pb::Category::FoodSafety => Self::FoodSafety,
            pb::Category::PoorQualityGoods => Self::PoorQualityGoods,
            pb::Category::Other => Self::Other,
        })
    }
}

/// Severity, ordered from low to critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The severity of a proto enum value; `None` for unspecified or unknown
    /// values, which then meet no `min_severity`.
    pub fn from_proto(v: i32) -> Option<Self> {
        Some(match pb::Severity::try_from(v).ok()? {
            pb::Severity::Unspecified => return None,
            pb::Severity::Low => Self::Low,
            pb::Severity::Medium => Self::Medium,
            pb::Severity::High => Self::High,
            pb::Severity::Critical => Self::Critical,
        })
    }
}

/// Who receives an entry (before filtering to current members and adding
/// the author).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Audience {
    /// Every current member. TOML: `audience = "all"`.
    All,
    /// These members. TOML: `audience = { members = ["01", "24"] }`.
    Members(Vec<String>),
    /// The observed and/or concerned provinces themselves plus every
    /// province bordering one of them. TOML:
    /// `audience = { neighbours_of = { observed = true, concerned = true } }`.
    NeighboursOf {
        /// Include the provinces named in `concerned_provinces`.
        #[serde(default)]
        concerned: bool,
        /// Include the province where the violation was observed.
        #[serde(default)]
        observed: bool,
    },
    /// Nobody but the author. TOML: `audience = "author_only"`.
    AuthorOnly,
}

/// Handling codes, after the European police exchange (SIENA) codes: what a
/// recipient may do with what it received. Each code is stricter than the
/// one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Handling {
    /// May be passed on to other competent authorities and used as evidence
    /// in administrative or criminal proceedings without asking the author.
    H0,
    /// May be used as evidence, but must not be passed on beyond the
    /// receiving province's committee without the author's consent.
    H1,
    /// For intelligence only: neither passed on nor used as evidence without
    /// the author's prior consent (ask through an assistance request).
    H2,
    /// Restricted: an operation is under way. No action on the subjects and
    /// no use at all (beyond reading) until the author lifts the restriction;
    /// contact the author first.
    H3,
}

impl Handling {
    /// The wire form signed into entries.
    pub fn to_proto(self) -> pb::Handling {
        match self {
            Self::H0 => pb::Handling::H0,
            Self::H1 => pb::Handling::H1,
            Self::H2 => pb::Handling::H2,
            Self::H3 => pb::Handling::H3,
        }
    }
}

/// A field withheld from every recipient except those listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redaction {
    /// Recipients that do see the field (the author always does).
    #[serde(default)]
    pub except_to: Vec<Recipient>,
    /// Which field.
    pub field: RedactableField,
}

/// A recipient selector in `except_to`: `"observed"`, `"concerned"` or a
/// member code such as `"01"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Recipient {
    /// The province where the violation was observed.
    Observed,
    /// The provinces listed in the alert's `concerned_provinces`.
    Concerned,
    /// One member, by code.
    Member(String),
}

impl TryFrom<String> for Recipient {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "observed" => Ok(Self::Observed),
            "concerned" => Ok(Self::Concerned),
            c if is_province(c) => Ok(Self::Member(s)),
            _ => Err(format!(
                "{s:?} is not a recipient: use \"observed\", \"concerned\" or a province code such as \"01\""
            )),
        }
    }
}

impl From<Recipient> for String {
    fn from(r: Recipient) -> String {
        match r {
            Recipient::Observed => "observed".into(),
            Recipient::Concerned => "concerned".into(),
            Recipient::Member(c) => c,
        }
    }
}

/// The alert fields a rule may redact, named by their path in the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum RedactableField {
    #[serde(rename = "person.citizen_id")]
    PersonCitizenId,
    #[serde(rename = "person.full_name")]
    PersonFullName,
    #[serde(rename = "vehicle.plate")]
    VehiclePlate,
    #[serde(rename = "vehicle.description")]
    VehicleDescription,
    #[serde(rename = "business.tax_code")]
    BusinessTaxCode,
    #[serde(rename = "business.name")]
    BusinessName,
    #[serde(rename = "business.address")]
    BusinessAddress,
    #[serde(rename = "location.commune")]
    LocationCommune,
    #[serde(rename = "location.address")]
    LocationAddress,
    #[serde(rename = "description")]
    Description,
}

impl RedactableField {
    /// The field path, as written in the agreement.
    pub fn path(self) -> &'static str {
        match self {
            Self::PersonCitizenId => "person.citizen_id",
            Self::PersonFullName => "person.full_name",
            Self::VehiclePlate => "vehicle.plate",
            Self::VehicleDescription => "vehicle.description",
            Self::BusinessTaxCode => "business.tax_code",
            Self::BusinessName => "business.name",
            Self::BusinessAddress => "business.address",
            Self::LocationCommune => "location.commune",
            Self::LocationAddress => "location.address",
            Self::Description => "description",
        }
    }

    /// Whether the alert carries a non-empty value for this field; redacting
    /// an absent field would only be noise in the decision.
    fn present_in(self, alert: &pb::Alert) -> bool {
        use pb::subject::Kind;
        let kinds = || alert.subjects.iter().filter_map(|s| s.kind.as_ref());
        match self {
            Self::PersonCitizenId => {
                kinds().any(|k| matches!(k, Kind::Person(p) if !p.citizen_id.is_empty()))
            }
            Self::PersonFullName => {
                kinds().any(|k| matches!(k, Kind::Person(p) if !p.full_name.is_empty()))
            }
            Self::VehiclePlate => {
                kinds().any(|k| matches!(k, Kind::Vehicle(v) if !v.plate.is_empty()))
            }
            Self::BusinessTaxCode => {
                kinds().any(|k| matches!(k, Kind::Business(b) if !b.tax_code.is_empty()))
            }
            Self::BusinessName => {
                kinds().any(|k| matches!(k, Kind::Business(b) if !b.name.is_empty()))
            }
            Self::VehicleDescription => {
                kinds().any(|k| matches!(k, Kind::Vehicle(v) if !v.description.is_empty()))
            }
            Self::BusinessAddress => {
                kinds().any(|k| matches!(k, Kind::Business(b) if !b.address.is_empty()))
            }
            Self::LocationCommune => alert
                .location
                .as_ref()
                .is_some_and(|l| !l.commune.is_empty()),
            Self::LocationAddress => alert
                .location
                .as_ref()
                .is_some_and(|l| !l.address.is_empty()),
            Self::Description => !alert.description.is_empty(),
        }
    }
}

/// Why an agreement was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AgreementError {
    /// Not valid TOML for an agreement (syntax, unknown field, wrong type).
    #[error("agreement is not valid: {0}")]
    Parse(String),
    /// Parsed, but inconsistent; every problem found is listed.
    #[error("agreement has {} problem(s):\n{}", .0.len(), .0.join("\n"))]
    Invalid(Vec<String>),
}

impl Agreement {
    /// Parses and validates an agreement written in TOML, reporting every
    /// problem at once. Codes are checked against the 34 provinces; use
    /// [`Agreement::problems`] with the member list to check them against a
    /// federation (the manifest does).
    pub fn from_toml(text: &str) -> Result<Self, AgreementError> {
        let a: Agreement =
            toml::from_str(text).map_err(|e| AgreementError::Parse(e.to_string()))?;
        let problems = a.problems("", None);
        if problems.is_empty() {
            Ok(a)
        } else {
            Err(AgreementError::Invalid(problems))
        }
    }

    /// Every problem with this agreement, each prefixed with `path` and the
    /// field it is about. With `members`, member codes it names must be
    /// among them.
    pub fn problems(&self, path: &str, members: Option<&[String]>) -> Vec<String> {
        let mut out = Vec::new();
        let mut p = |field: String, msg: String| out.push(format!("{path}{field}: {msg}"));
        let check_member = |c: &str| -> Option<String> {
            if !is_province(c) {
                Some(format!(
                    "{c:?} is not a province code (two digits, one of the 34)"
                ))
            } else if members.is_some_and(|m| !m.iter().any(|x| x == c)) {
                Some(format!(
                    "{c:?} is not a member of the federation; add it to members or remove it here"
                ))
            } else {
                None
            }
        };

        if let Some(c) = &self.coordination {
            if c.assistance_deadline_hours == Some(0) {
                p(
                    "coordination.assistance_deadline_hours".into(),
                    "0 hours leaves no time to answer: give at least 1, or omit it for 72".into(),
                );
            }
            for (i, m) in c.escalate_to.iter().enumerate() {
                if let Some(msg) = check_member(m) {
                    p(format!("coordination.escalate_to[{i}]"), msg);
                }
            }
        }
        if self.rules.is_empty() {
            p(
                "rules".into(),
                "no rules: add at least a default rule (one without `when`) at the end".into(),
            );
        }
        let mut names = BTreeSet::new();
        let last = self.rules.len().saturating_sub(1);
        for (i, r) in self.rules.iter().enumerate() {
            let rp = format!("rules[{i}]");
            if r.name.trim().is_empty() {
                p(
                    format!("{rp}.name"),
                    "empty: give the rule a short name".into(),
                );
            } else if !names.insert(r.name.as_str()) {
                p(
                    format!("{rp}.name"),
                    format!(
                        "{:?} is used by an earlier rule; names must be unique",
                        r.name
                    ),
                );
            }
            if r.when.is_catch_all() && i != last {
                p(
                    format!("{rp}.when"),
                    format!(
                        "matches every alert, so the {} rule(s) after it can never apply; move it to the end or add criteria",
                        last - i
                    ),
                );
            }
            if i == last && !r.when.is_catch_all() {
                p(format!("{rp}.when"), "the last rule must be the default: remove its `when` so every alert gets a decision".into());
            }
            for (j, c) in r.when.provinces.iter().enumerate() {
                if !is_province(c) {
                    p(
                        format!("{rp}.when.provinces[{j}]"),
                        format!("{c:?} is not a province code (two digits, one of the 34)"),
                    );
                }
            }
            match &r.audience {
                Audience::Members(ms) => {
                    if ms.is_empty() {
                        p(
                            format!("{rp}.audience.members"),
                            "empty: name members, or use \"author_only\"".into(),
                        );
                    }
                    for (j, c) in ms.iter().enumerate() {
                        if let Some(m) = check_member(c) {
                            p(format!("{rp}.audience.members[{j}]"), m);
                        }
                    }
                }
                Audience::NeighboursOf {
                    concerned: false,
                    observed: false,
                } => {
                    p(
                        format!("{rp}.audience.neighbours_of"),
                        "selects nobody: set observed = true and/or concerned = true".into(),
                    );
                }
                _ => {}
            }
            for (j, red) in r.redact.iter().enumerate() {
                for (k, e) in red.except_to.iter().enumerate() {
                    if let Recipient::Member(c) = e
                        && let Some(m) = check_member(c)
                    {
                        p(format!("{rp}.redact[{j}].except_to[{k}]"), m);
                    }
                }
            }
            if r.response_deadline_hours == Some(0) {
                p(
                    format!("{rp}.response_deadline_hours"),
                    "0 hours: give at least 1, or remove it".into(),
                );
            }
        }
        for (code, ns) in &self.neighbours {
            if !is_province(code) {
                p(
                    format!("neighbours.{code:?}"),
                    "not a province code (two digits, one of the 34)".into(),
                );
            }
            for (j, n) in ns.iter().enumerate() {
                if !is_province(n) {
                    p(
                        format!("neighbours.{code:?}[{j}]"),
                        format!("{n:?} is not a province code"),
                    );
                } else if n == code {
                    p(
                        format!("neighbours.{code:?}[{j}]"),
                        "a province does not border itself; remove it".into(),
                    );
                }
            }
        }
        out
    }

    /// The canonical bytes hashed by [`agreement_hash`] (see the module docs).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising plain strings, integers, booleans, lists and a BTreeMap
        // cannot fail; the fallback only keeps this function total.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The province codes bordering `code`, read symmetrically.
    pub fn neighbours_of(&self, code: &str) -> BTreeSet<&str> {
        let mut out: BTreeSet<&str> = self
            .neighbours
            .get(code)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        for (other, ns) in &self.neighbours {
            if ns.iter().any(|n| n == code) {
                out.insert(other.as_str());
            }
        }
        out.remove(code);
        out
    }
}

/// SHA-256 of the agreement's canonical bytes, recorded in every entry.
pub fn agreement_hash(agreement: &Agreement) -> [u8; 32] {
    Sha256::digest(agreement.canonical_bytes()).into()
}

/// The outcome of applying the agreement to one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Name of the rule that decided.
    pub rule: String,
    /// Member codes that receive the entry: sorted, unique, current members
    /// only, always with the author. The author is kept even if it is not a
    /// member (the entry must at least stay in its own feed); whether a
    /// non-member may author at all is the caller's check, not policy.
    pub audience: Vec<String>,
    /// Recipient code → field paths to replace by commitments for that
    /// recipient. Recipients that see everything are absent; the author
    /// never appears.
    pub redactions: BTreeMap<String, Vec<String>>,
    /// What recipients may do with the entry.
    pub handling: Handling,
    /// Hours the recipients have to answer, if the rule sets a deadline.
    pub response_deadline_hours: Option<u32>,
}

fn rule_matches(r: &Rule, alert: &pb::Alert) -> bool {
    let w = &r.when;
    if !w.categories.is_empty() {
        match Category::from_proto(alert.category) {
            Some(c) if w.categories.contains(&c) => {}
            _ => return false,
        }
    }
    if let Some(min) = w.min_severity {
        match Severity::from_proto(alert.severity) {
            Some(s) if s >= min => {}
            _ => return false,
        }
    }
    if !w.provinces.is_empty() {
        let observed = alert.location.as_ref().map(|l| l.province.as_str());
        let hit = w.provinces.iter().any(|p| {
            Some(p.as_str()) == observed || alert.concerned_provinces.iter().any(|c| c == p)
        });
        if !hit {
            return false;
        }
    }
    true
}

/// The rule used when an agreement has no rule that matches, which a
/// validated agreement never lacks: share with nobody, the safe failure.
fn fallback_decision(author: &str) -> Decision {
    Decision {
        rule: String::new(),
        audience: vec![author.to_owned()],
        redactions: BTreeMap::new(),
        handling: Handling::H3,
        response_deadline_hours: None,
    }
}

/// Applies the agreement to an alert authored by `author`, given the codes
/// of the current members. Pure and total: any alert gets a decision.
///
/// If no rule matches (only possible for an agreement that was not
/// validated) the alert stays with the author under [`Handling::H3`] and
/// `rule` is empty.
pub fn decide(
    agreement: &Agreement,
    members: &[String],
    author: &str,
    alert: &pb::Alert,
) -> Decision {
    let Some(rule) = agreement.rules.iter().find(|r| rule_matches(r, alert)) else {
        return fallback_decision(author);
    };
    let observed = alert
        .location
        .as_ref()
        .map(|l| l.province.as_str())
        .filter(|p| !p.is_empty());
    let concerned = alert.concerned_provinces.iter().map(String::as_str);

    let wanted: BTreeSet<&str> = match &rule.audience {
        Audience::All => members.iter().map(String::as_str).collect(),
        Audience::Members(ms) => ms.iter().map(String::as_str).collect(),
        Audience::AuthorOnly => BTreeSet::new(),
        Audience::NeighboursOf {
            concerned: c,
            observed: o,
        } => {
            let mut base: BTreeSet<&str> = BTreeSet::new();
            if *o {
                base.extend(observed);
            }
            if *c {
                base.extend(concerned.clone());
            }
            let mut all = base.clone();
            for p in &base {
                all.extend(agreement.neighbours_of(p));
            }
            all
        }
    };
    let mut audience: BTreeSet<&str> = wanted
        .into_iter()
        .filter(|c| members.iter().any(|m| m == c))
        .collect();
    audience.insert(author);

    let mut redactions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for red in rule.redact.iter().filter(|r| r.field.present_in(alert)) {
        let allowed: BTreeSet<&str> = red
            .except_to
            .iter()
            .flat_map(|e| -> Vec<&str> {
                match e {
                    Recipient::Observed => observed.into_iter().collect(),
                    Recipient::Concerned => concerned.clone().collect(),
                    Recipient::Member(c) => vec![c.as_str()],
                }
            })
            .collect();
        for r in audience
            .iter()
            .filter(|r| **r != author && !allowed.contains(*r))
        {
            let fields = redactions.entry((*r).to_owned()).or_default();
            let path = red.field.path().to_owned();
            if !fields.contains(&path) {
                fields.push(path);
            }
        }
    }
    for fields in redactions.values_mut() {
        fields.sort();
    }

    Decision {
        rule: rule.name.clone(),
        audience: audience.into_iter().map(str::to_owned).collect(),
        redactions,
        handling: rule.handling,
        response_deadline_hours: rule.response_deadline_hours,
    }
}

/// The salted commitment that replaces a redacted field value:
/// `SHA-256("lienthong:redact:v1\n" ‖ salt ‖ value)`. Use a fresh random
/// salt for every value, or equal values would give equal commitments.
pub fn commit_field(value: &[u8], salt: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(REDACT_DOMAIN);
    h.update(salt);
    h.update(value);
    h.finalize().into()
}

/// Whether `(value, salt)` opens `commitment`.
pub fn verify_commitment(commitment: &[u8; 32], value: &[u8], salt: &[u8; 32]) -> bool {
    // Commitments are public, so a timing difference reveals nothing; plain
    // comparison is enough.
    commit_field(value, salt) == *commitment
}
