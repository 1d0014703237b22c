//! Validation and normalisation of the coordination entries local systems
//! submit: case events, assistance requests and answers, inspection events,
//! meeting minutes and retraction reasons.
//!
//! Each function checks the *shape* of one input against the rules in
//! `proto/lienthong/v1/entry.proto` ("Coordination entries"), reports every
//! problem at once (each naming the field path and the fix, as
//! [`validate_alert`](crate::alert::validate_alert) does) and returns the
//! message in the normalised form that will be signed: text trimmed where
//! alerts trim it and in Unicode NFC, identifiers in canonical form,
//! province lists sorted and without duplicates.
//!
//! Checks that need the federation or the case's state (is the province a
//! member, is the author the lead, is the invited province already in the
//! case, is `to` the author) are not done here.

use lienthong_proto::v1::{
    AdministrativeDecision, AssistanceAnswer, AssistanceFinding, AssistanceRequest,
    AssistanceTopic, CaseAnswer, CaseClosure, CaseEvent, CaseHandover, CaseInvitation, CaseOpened,
    CaseOutcome, CaseTransfer, Category, Goods, InspectionEvent, InspectionPlan, InspectionReport,
    InspectionResult, Location, Meeting, SeizureRecord, Subject, TransferTarget, case_event,
    inspection_event, subject,
};

use crate::alert::{InvalidInput, Problems, subject_field, text_field, vnd};
use crate::provinces::is_province;

/// Bounds of coordination entries, documented in
/// `proto/lienthong/v1/entry.proto`. Titles, free text, references and
/// times use [`crate::alert::limits`].
pub mod limits {
    /// Longest short message or reason (invitation and answer messages,
    /// handover, transfer and retraction reasons, decision measures, each
    /// meeting decision), in characters.
    pub const MESSAGE_MAX: usize = 2_000;
    /// Longest record or decision number, in characters.
    pub const NUMBER_MAX: usize = 100;
    /// Longest agency name or meeting place, in characters.
    pub const NAME_MAX: usize = 300;
    /// Most items in a list of subjects, goods, entry ids or decisions.
    pub const ITEMS_MAX: usize = 100;
    /// Most provinces in a list of provinces.
    pub const PROVINCES_MAX: usize = 34;
    /// Length of an entry id (case id, plan id, alert id, request id).
    pub const ENTRY_ID_LEN: usize = 32;
}

use crate::alert::limits::{
    DESCRIPTION_MAX, FUTURE_SLACK_MS, OBSERVED_MIN_UNIX_MS, REFERENCE_MAX, TITLE_MAX,
};
use limits::{ENTRY_ID_LEN, ITEMS_MAX, MESSAGE_MAX, NAME_MAX, NUMBER_MAX, PROVINCES_MAX};

const CATEGORY_CHOICES: &str = "SMUGGLING, TRADE_FRAUD, COUNTERFEIT, INTELLECTUAL_PROPERTY, PROHIBITED_GOODS, FOOD_SAFETY, POOR_QUALITY_GOODS, OTHER";

/// Checks and normalises a case event. `now_unix_ms` is the node's clock.
///
/// `parents` and `history` are set by the node and must be empty; `case_id`
/// must be empty for `opened` and the 32-byte id of the opening entry
/// otherwise. Field paths start with `case_event.`.
pub fn validate_case_event(
    e: Option<&CaseEvent>,
    now_unix_ms: i64,
) -> Result<CaseEvent, InvalidInput> {
    let Some(e) = e else {
        return Err(InvalidInput::one(
            "case_event",
            "missing: set the case event to submit",
        ));
    };
    let mut p = Problems::default();
    let mut out = CaseEvent::default();

    // case_id: empty exactly when the event opens the case.
    let opening = matches!(e.event, Some(case_event::Event::Opened(_)));
    match (opening, e.case_id.len()) {
        (true, 0) => {}
        (true, _) => p.add(
            "case_event.case_id",
            "must be empty when the event is `opened`: the new case's id is the id of the entry that opens it",
        ),
        // Without an event we cannot tell which rule applies; only a
        // length that fits neither is wrong.
        (false, 0) if e.event.is_none() => {}
        (false, 0) => p.add(
            "case_event.case_id",
            "missing: set the case's id (the 32-byte id of the entry whose event is `opened`); only `opened` leaves it empty",
        ),
        (false, ENTRY_ID_LEN) => out.case_id = e.case_id.clone(),
        (false, n) => p.add(
            "case_event.case_id",
            format!(
                "{n} bytes: must be the {ENTRY_ID_LEN}-byte id of the entry whose event is `opened`"
            ),
        ),
    }

    if !e.parents.is_empty() {
        p.add("case_event.parents", "set by the node; leave empty");
    }
    out.reference = reference_field(&mut p, "case_event.reference", &e.reference);
    if !e.history.is_empty() {
        p.add("case_event.history", "set by the node; leave empty");
    }

    out.event = match &e.event {
        None => {
            p.add(
                "case_event.event",
                "missing: set exactly one of opened, invitation, invitation_answer, handover, handover_answer, inspection_result, seizure, decision, transfer, closure",
            );
            None
        }
        Some(ev) => Some(case_event_kind(&mut p, ev, now_unix_ms)),
    };

    finish(p, out)
}

fn case_event_kind(p: &mut Problems, ev: &case_event::Event, now: i64) -> case_event::Event {
    use case_event::Event;
    match ev {
        Event::Opened(o) => {
            let f = "case_event.opened";
            Event::Opened(CaseOpened {
                title: text_field(p, &format!("{f}.title"), &o.title, 1, TITLE_MAX, false),
                summary: text_field(
                    p,
                    &format!("{f}.summary"),
                    &o.summary,
                    0,
                    DESCRIPTION_MAX,
                    true,
                ),
                category: enum_field::<Category>(
                    p,
                    &format!("{f}.category"),
                    o.category,
                    true,
                    "Category",
                    CATEGORY_CHOICES,
                ),
                alert_ids: id_list(
                    p,
                    &format!("{f}.alert_ids"),
                    &o.alert_ids,
                    "the entry id of an alert this node holds",
                ),
                invite: province_list(p, &format!("{f}.invite"), &o.invite, 0),
                subjects: subject_list(p, &format!("{f}.subjects"), &o.subjects),
            })
        }
        Event::Invitation(i) => {
            let f = "case_event.invitation";
            Event::Invitation(CaseInvitation {
                provinces: province_list(p, &format!("{f}.provinces"), &i.provinces, 1),
                message: text_field(p, &format!("{f}.message"), &i.message, 0, MESSAGE_MAX, true),
            })
        }
        Event::InvitationAnswer(a) => {
            Event::InvitationAnswer(case_answer(p, "case_event.invitation_answer", a))
        }
        Event::Handover(h) => {
            let f = "case_event.handover";
            Event::Handover(CaseHandover {
                to: province_code(p, &format!("{f}.to"), &h.to),
                reason: text_field(p, &format!("{f}.reason"), &h.reason, 1, MESSAGE_MAX, true),
            })
        }
        Event::HandoverAnswer(a) => {
            Event::HandoverAnswer(case_answer(p, "case_event.handover_answer", a))
        }
        Event::InspectionResult(r) => {
            let f = "case_event.inspection_result";
            Event::InspectionResult(InspectionResult {
                inspected_unix_ms: past_time(
                    p,
                    &format!("{f}.inspected_unix_ms"),
                    r.inspected_unix_ms,
                    now,
                    "the inspection took place",
                ),
                location: location_field(p, &format!("{f}.location"), r.location.as_ref()),
                findings: text_field(
                    p,
                    &format!("{f}.findings"),
                    &r.findings,
                    1,
                    DESCRIPTION_MAX,
                    true,
                ),
                violation_found: r.violation_found,
            })
        }
        Event::Seizure(s) => {
            let f = "case_event.seizure";
            Event::Seizure(SeizureRecord {
                record_number: text_field(
                    p,
                    &format!("{f}.record_number"),
                    &s.record_number,
                    1,
                    NUMBER_MAX,
                    false,
                ),
                seized_unix_ms: past_time(
                    p,
                    &format!("{f}.seized_unix_ms"),
                    s.seized_unix_ms,
                    now,
                    "the goods were seized",
                ),
                location: location_field(p, &format!("{f}.location"), s.location.as_ref()),
                goods: seized_goods(p, &format!("{f}.goods"), &s.goods),
            })
        }
        Event::Decision(d) => {
            let f = "case_event.decision";
            let violator_field = format!("{f}.violator");
            let violator = match &d.violator {
                None => {
                    p.add(
                        violator_field,
                        "missing: set who is sanctioned (one of business, vehicle, person, goods)",
                    );
                    None
                }
                Some(s) => Some(subject_field(p, &violator_field, s)),
            };
            Event::Decision(AdministrativeDecision {
                decision_number: text_field(
                    p,
                    &format!("{f}.decision_number"),
                    &d.decision_number,
                    1,
                    NUMBER_MAX,
                    false,
                ),
                decided_unix_ms: past_time(
                    p,
                    &format!("{f}.decided_unix_ms"),
                    d.decided_unix_ms,
                    now,
                    "the decision was signed",
                ),
                violator,
                fine_vnd: vnd(p, &format!("{f}.fine_vnd"), d.fine_vnd),
                measures: text_field(
                    p,
                    &format!("{f}.measures"),
                    &d.measures,
                    0,
                    MESSAGE_MAX,
                    true,
                ),
            })
        }
        Event::Transfer(t) => {
            let f = "case_event.transfer";
            Event::Transfer(CaseTransfer {
                target: enum_field::<TransferTarget>(
                    p,
                    &format!("{f}.target"),
                    t.target,
                    true,
                    "TransferTarget",
                    "POLICE, PROCURACY, CUSTOMS",
                ),
                agency: text_field(p, &format!("{f}.agency"), &t.agency, 1, NAME_MAX, false),
                reason: text_field(p, &format!("{f}.reason"), &t.reason, 1, MESSAGE_MAX, true),
            })
        }
        Event::Closure(c) => {
            let f = "case_event.closure";
            Event::Closure(CaseClosure {
                outcome: enum_field::<CaseOutcome>(
                    p,
                    &format!("{f}.outcome"),
                    c.outcome,
                    true,
                    "CaseOutcome",
                    "SANCTIONED, PROSECUTED, NO_VIOLATION, OTHER",
                ),
                summary: text_field(
                    p,
                    &format!("{f}.summary"),
                    &c.summary,
                    1,
                    DESCRIPTION_MAX,
                    true,
                ),
            })
        }
    }
}

/// Checks and normalises an assistance request. `now_unix_ms` is the node's
/// clock: a deadline (`due_unix_ms`) must be 0 or after it. Field paths
/// start with `assistance_request.`.
pub fn validate_assistance_request(
    r: Option<&AssistanceRequest>,
    now_unix_ms: i64,
) -> Result<AssistanceRequest, InvalidInput> {
    let Some(r) = r else {
        return Err(InvalidInput::one(
            "assistance_request",
            "missing: set the assistance request to submit",
        ));
    };
    let mut p = Problems::default();
    let f = "assistance_request";
    // Fields in proto order, so problems are reported in that order.
    let reference = reference_field(&mut p, &format!("{f}.reference"), &r.reference);
    let to = province_code(&mut p, &format!("{f}.to"), &r.to);
    let topic = enum_field::<AssistanceTopic>(
        &mut p,
        &format!("{f}.topic"),
        r.topic,
        true,
        "AssistanceTopic",
        "BUSINESS, VEHICLE, CONSIGNMENT, PERSON, OTHER",
    );
    let question = text_field(
        &mut p,
        &format!("{f}.question"),
        &r.question,
        1,
        DESCRIPTION_MAX,
        true,
    );
    let subjects = subject_list(&mut p, &format!("{f}.subjects"), &r.subjects);
    let case_id = if r.case_id.is_empty() {
        Vec::new()
    } else {
        id_field(
            &mut p,
            &format!("{f}.case_id"),
            &r.case_id,
            "the case's id (the entry that opened it), or empty if the request is not for a case",
        )
    };
    if r.due_unix_ms != 0 && r.due_unix_ms <= now_unix_ms {
        p.add(
            format!("{f}.due_unix_ms"),
            "in the past: set a deadline after now (milliseconds since 1970-01-01 UTC), or 0 for the agreement's default",
        );
    }
    let out = AssistanceRequest {
        reference,
        to,
        topic,
        question,
        subjects,
        case_id,
        due_unix_ms: r.due_unix_ms,
    };
    finish(p, out)
}

/// Checks and normalises the answer to an assistance request. Field paths
/// start with `assistance_answer.`.
pub fn validate_assistance_answer(
    a: Option<&AssistanceAnswer>,
) -> Result<AssistanceAnswer, InvalidInput> {
    let Some(a) = a else {
        return Err(InvalidInput::one(
            "assistance_answer",
            "missing: set the assistance answer to submit",
        ));
    };
    let mut p = Problems::default();
    let f = "assistance_answer";
    let out = AssistanceAnswer {
        request_id: id_field(
            &mut p,
            &format!("{f}.request_id"),
            &a.request_id,
            "the entry id of the request you answer",
        ),
        reference: reference_field(&mut p, &format!("{f}.reference"), &a.reference),
        finding: enum_field::<AssistanceFinding>(
            &mut p,
            &format!("{f}.finding"),
            a.finding,
            true,
            "AssistanceFinding",
            "CONFIRMED, NOT_CONFIRMED, NOT_FOUND, PARTIAL",
        ),
        answer: text_field(
            &mut p,
            &format!("{f}.answer"),
            &a.answer,
            1,
            DESCRIPTION_MAX,
            true,
        ),
        subjects: subject_list(&mut p, &format!("{f}.subjects"), &a.subjects),
    };
    finish(p, out)
}

/// Checks and normalises an inspection event (a plan, an acceptance or a
/// report). `plan_id` must be empty for `plan` and the 32-byte id of the
/// plan's entry otherwise. Field paths start with `inspection.`.
///
/// `now_unix_ms` is the node's clock; no rule of an inspection event
/// depends on it today (a plan may lie in the future), it is taken so that
/// every coordination validator has the same shape.
pub fn validate_inspection_event(
    e: Option<&InspectionEvent>,
    now_unix_ms: i64,
) -> Result<InspectionEvent, InvalidInput> {
    let _ = now_unix_ms;
    let Some(e) = e else {
        return Err(InvalidInput::one(
            "inspection",
            "missing: set the inspection event to submit",
        ));
    };
    let mut p = Problems::default();
    let mut out = InspectionEvent::default();

    let planning = matches!(e.event, Some(inspection_event::Event::Plan(_)));
    match (planning, e.plan_id.len()) {
        (true, 0) => {}
        (true, _) => p.add(
            "inspection.plan_id",
            "must be empty when the event is `plan`: the plan's id is the id of the entry that carries it",
        ),
        (false, 0) if e.event.is_none() => {}
        (false, 0) => p.add(
            "inspection.plan_id",
            "missing: set the plan's id (the 32-byte id of the entry whose event is `plan`); only `plan` leaves it empty",
        ),
        (false, ENTRY_ID_LEN) => out.plan_id = e.plan_id.clone(),
        (false, n) => p.add(
            "inspection.plan_id",
            format!(
                "{n} bytes: must be the {ENTRY_ID_LEN}-byte id of the entry whose event is `plan`"
            ),
        ),
    }
    out.reference = reference_field(&mut p, "inspection.reference", &e.reference);

    out.event = match &e.event {
        None => {
            p.add(
                "inspection.event",
                "missing: set exactly one of plan, acceptance, report",
            );
            None
        }
        Some(inspection_event::Event::Plan(pl)) => {
            Some(inspection_event::Event::Plan(inspection_plan(&mut p, pl)))
        }
        Some(inspection_event::Event::Acceptance(a)) => Some(inspection_event::Event::Acceptance(
            case_answer(&mut p, "inspection.acceptance", a),
        )),
        Some(inspection_event::Event::Report(r)) => {
            let f = "inspection.report";
            let findings = text_field(
                &mut p,
                &format!("{f}.findings"),
                &r.findings,
                1,
                DESCRIPTION_MAX,
                true,
            );
            if r.violations > r.inspected {
                p.add(
                    format!("{f}.violations"),
                    format!(
                        "{} violations but {} establishments inspected: violations cannot exceed inspected",
                        r.violations, r.inspected
                    ),
                );
            }
            Some(inspection_event::Event::Report(InspectionReport {
                findings,
                inspected: r.inspected,
                violations: r.violations,
                fines_vnd: vnd(&mut p, &format!("{f}.fines_vnd"), r.fines_vnd),
                seized_value_vnd: vnd(&mut p, &format!("{f}.seized_value_vnd"), r.seized_value_vnd),
                case_ids: id_list(
                    &mut p,
                    &format!("{f}.case_ids"),
                    &r.case_ids,
                    "the id of a case opened from this inspection",
                ),
            }))
        }
    };
    finish(p, out)
}

fn inspection_plan(p: &mut Problems, pl: &InspectionPlan) -> InspectionPlan {
    let f = "inspection.plan";
    let title = text_field(p, &format!("{f}.title"), &pl.title, 1, TITLE_MAX, false);
    let provinces = province_list(p, &format!("{f}.provinces"), &pl.provinces, 1);
    let starts = any_time(
        p,
        &format!("{f}.starts_unix_ms"),
        pl.starts_unix_ms,
        "the inspections start",
    );
    let ends = any_time(
        p,
        &format!("{f}.ends_unix_ms"),
        pl.ends_unix_ms,
        "the inspections end",
    );
    if starts != 0 && ends != 0 && ends < starts {
        p.add(
            format!("{f}.ends_unix_ms"),
            "before starts_unix_ms: the last day cannot come before the first",
        );
    }
    InspectionPlan {
        title,
        provinces,
        starts_unix_ms: pl.starts_unix_ms,
        ends_unix_ms: pl.ends_unix_ms,
        category: enum_field::<Category>(
            p,
            &format!("{f}.category"),
            pl.category,
            false,
            "Category",
            CATEGORY_CHOICES,
        ),
        targets: subject_list(p, &format!("{f}.targets"), &pl.targets),
        scope: text_field(
            p,
            &format!("{f}.scope"),
            &pl.scope,
            0,
            DESCRIPTION_MAX,
            true,
        ),
    }
}

/// Checks and normalises the minutes of a coordination meeting.
/// `now_unix_ms` is the node's clock: the meeting must not be more than
/// 5 minutes in the future. Field paths start with `meeting.`.
pub fn validate_meeting(m: Option<&Meeting>, now_unix_ms: i64) -> Result<Meeting, InvalidInput> {
    let Some(m) = m else {
        return Err(InvalidInput::one(
            "meeting",
            "missing: set the meeting to submit",
        ));
    };
    let mut p = Problems::default();
    let f = "meeting";
    let mut out = Meeting {
        reference: reference_field(&mut p, &format!("{f}.reference"), &m.reference),
        title: text_field(&mut p, &format!("{f}.title"), &m.title, 1, TITLE_MAX, false),
        held_unix_ms: past_time(
            &mut p,
            &format!("{f}.held_unix_ms"),
            m.held_unix_ms,
            now_unix_ms,
            "the meeting was held",
        ),
        place: text_field(&mut p, &format!("{f}.place"), &m.place, 0, NAME_MAX, false),
        participants: province_list(&mut p, &format!("{f}.participants"), &m.participants, 1),
        minutes: text_field(
            &mut p,
            &format!("{f}.minutes"),
            &m.minutes,
            1,
            DESCRIPTION_MAX,
            true,
        ),
        decisions: Vec::new(),
    };
    if m.decisions.len() > ITEMS_MAX {
        p.add(
            format!("{f}.decisions"),
            format!(
                "{} decisions: at most {ITEMS_MAX} are allowed",
                m.decisions.len()
            ),
        );
    } else {
        out.decisions = m
            .decisions
            .iter()
            .enumerate()
            .map(|(i, d)| {
                text_field(
                    &mut p,
                    &format!("{f}.decisions[{i}]"),
                    d,
                    1,
                    MESSAGE_MAX,
                    true,
                )
            })
            .collect();
    }
    finish(p, out)
}

/// Checks and normalises a reason (of a retraction or a correction): 1–2,000
/// characters after trimming, in NFC, with no control characters other than
/// line breaks and tabs. `field` is the path reported on error, e.g.
/// `"retraction.reason"`.
pub fn validate_reason(field: &str, reason: &str) -> Result<String, InvalidInput> {
    let mut p = Problems::default();
    let out = text_field(&mut p, field, reason, 1, MESSAGE_MAX, true);
    finish(p, out)
}

// ---------------------------------------------------------------------------
// Shared field checks. Each adds its problems to `p` and returns the
// normalised value (or the input unchanged when it is wrong: the caller
// returns the problems, never that value).
// ---------------------------------------------------------------------------

fn finish<T>(p: Problems, out: T) -> Result<T, InvalidInput> {
    if p.0.is_empty() {
        Ok(out)
    } else {
        Err(InvalidInput(p.0))
    }
}

/// The submitting system's idempotency key, with the rules of
/// `Alert.reference`.
fn reference_field(p: &mut Problems, field: &str, r: &str) -> String {
    if r.is_empty() {
        p.add(
            field,
            "missing: set your system's own unique reference for this entry (e.g. \"case-2026-000123\"); it makes resubmission safe",
        );
    } else if r.len() > REFERENCE_MAX
        || !r
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:/".contains(&b))
    {
        p.add(
            field,
            format!("must be 1–{REFERENCE_MAX} characters from A–Z a–z 0–9 . _ : / -"),
        );
    }
    r.to_owned()
}

/// A protobuf enum: unknown values are always wrong, 0 (unspecified) only
/// when `required`.
fn enum_field<E: TryFrom<i32>>(
    p: &mut Problems,
    field: &str,
    value: i32,
    required: bool,
    name: &str,
    choices: &str,
) -> i32 {
    if E::try_from(value).is_err() {
        p.add(
            field,
            format!("unknown value {value}: use one of {choices} (see enum {name})"),
        );
    } else if required && value == 0 {
        p.add(field, format!("missing: choose one of {choices}"));
    }
    value
}

/// One entry id, required.
fn id_field(p: &mut Problems, field: &str, id: &[u8], what: &str) -> Vec<u8> {
    match id.len() {
        0 => p.add(field, format!("missing: set {what} ({ENTRY_ID_LEN} bytes)")),
        ENTRY_ID_LEN => {}
        n => p.add(
            field,
            format!("{n} bytes: must be {what}, {ENTRY_ID_LEN} bytes"),
        ),
    }
    id.to_vec()
}

/// A list of entry ids: at most [`ITEMS_MAX`], each 32 bytes, none twice.
/// Order is kept.
fn id_list(p: &mut Problems, field: &str, ids: &[Vec<u8>], what: &str) -> Vec<Vec<u8>> {
    if ids.len() > ITEMS_MAX {
        p.add(
            field,
            format!("{} ids: at most {ITEMS_MAX} are allowed", ids.len()),
        );
        return Vec::new();
    }
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if id.len() != ENTRY_ID_LEN {
            p.add(
                f,
                format!("{} bytes: must be {what}, {ENTRY_ID_LEN} bytes", id.len()),
            );
        } else if out.contains(id) {
            p.add(f, "listed twice: list each id once");
        } else {
            out.push(id.clone());
        }
    }
    out
}

/// One province code, required.
fn province_code(p: &mut Problems, field: &str, code: &str) -> String {
    if code.is_empty() {
        p.add(
            field,
            "missing: two-digit province code, e.g. \"24\" for Bắc Ninh",
        );
    } else if !is_province(code) {
        p.add(field, not_a_province(code));
    }
    code.to_owned()
}

fn not_a_province(code: &str) -> String {
    format!(
        "\"{code}\" is not a province code: use the two-digit code after the 2025 merger, e.g. \"24\" for Bắc Ninh"
    )
}

/// A list of province codes, `min`–34 of them; returned sorted and without
/// duplicates (a code listed twice means the same thing as once).
fn province_list(p: &mut Problems, field: &str, list: &[String], min: usize) -> Vec<String> {
    if list.len() < min {
        p.add(
            field,
            "missing: list at least one province code, e.g. \"24\" for Bắc Ninh",
        );
        return Vec::new();
    }
    if list.len() > PROVINCES_MAX {
        p.add(
            field,
            format!(
                "{} provinces: at most {PROVINCES_MAX} are allowed",
                list.len()
            ),
        );
        return Vec::new();
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        if is_province(c) {
            out.push(c.clone());
        } else {
            p.add(format!("{field}[{i}]"), not_a_province(c));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Up to [`ITEMS_MAX`] subjects, each checked as an alert's subject.
fn subject_list(p: &mut Problems, field: &str, list: &[Subject]) -> Vec<Subject> {
    if list.len() > ITEMS_MAX {
        p.add(
            field,
            format!("{} subjects: at most {ITEMS_MAX} are allowed", list.len()),
        );
        return Vec::new();
    }
    list.iter()
        .enumerate()
        .map(|(i, s)| subject_field(p, &format!("{field}[{i}]"), s))
        .collect()
}

/// The goods of a seizure record: 1–[`ITEMS_MAX`] items, each a valid
/// `Goods` (checked as an alert's goods subject) with a quantity above 0
/// and its unit.
fn seized_goods(p: &mut Problems, field: &str, list: &[Goods]) -> Vec<Goods> {
    if list.is_empty() {
        p.add(
            field,
            "missing: list the goods held, each with hs_code, description, quantity and unit",
        );
        return Vec::new();
    }
    if list.len() > ITEMS_MAX {
        p.add(
            field,
            format!("{} goods: at most {ITEMS_MAX} are allowed", list.len()),
        );
        return Vec::new();
    }
    list.iter()
        .enumerate()
        .map(|(i, g)| {
            let f = format!("{field}[{i}]");
            let g = goods_field(p, &f, g);
            // `goods_field` already reports a negative or non-finite
            // quantity, and a missing unit when the quantity is set.
            if g.quantity == 0.0 {
                p.add(
                    format!("{f}.quantity"),
                    "missing: a seizure record states the quantity held, above 0",
                );
                if g.unit.is_empty() {
                    p.add(
                        format!("{f}.unit"),
                        "missing: a seizure record states the unit (e.g. \"thùng\", \"kg\", \"chiếc\")",
                    );
                }
            }
            g
        })
        .collect()
}

/// One `Goods`, with the alert's rules, reported under `field` (e.g.
/// `case_event.seizure.goods[0].unit`).
fn goods_field(p: &mut Problems, field: &str, g: &Goods) -> Goods {
    let mut own = Problems::default();
    let s = subject_field(
        &mut own,
        field,
        &Subject {
            kind: Some(subject::Kind::Goods(g.clone())),
        },
    );
    // `subject_field` names goods fields `{field}.goods.…`: re-root them.
    let inner = format!("{field}.goods");
    for e in own.0 {
        let path = match e.field.strip_prefix(&inner) {
            Some(rest) => format!("{field}{rest}"),
            None => e.field,
        };
        p.add(path, e.problem);
    }
    match s.kind {
        Some(subject::Kind::Goods(g)) => g,
        _ => g.clone(),
    }
}

/// A required place, with the alert's location rules.
fn location_field(p: &mut Problems, field: &str, l: Option<&Location>) -> Option<Location> {
    let Some(l) = l else {
        p.add(
            field,
            format!(
                "missing: set at least {field}.province (two-digit code, e.g. \"20\" for Lạng Sơn)"
            ),
        );
        return None;
    };
    let province = format!("{field}.province");
    if l.province.is_empty() {
        p.add(
            province,
            "missing: two-digit province code, e.g. \"01\" for Hà Nội",
        );
    } else if !is_province(&l.province) {
        p.add(province, not_a_province(&l.province));
    }
    Some(Location {
        province: l.province.clone(),
        commune: text_field(p, &format!("{field}.commune"), &l.commune, 0, 200, false),
        address: text_field(p, &format!("{field}.address"), &l.address, 0, 500, false),
    })
}

/// A required time that has happened: not before 2000-01-01 and not more
/// than 5 minutes after `now` (the node's clock).
fn past_time(p: &mut Problems, field: &str, ms: i64, now: i64, what: &str) -> i64 {
    if any_time(p, field, ms, what) != 0 && ms > now.saturating_add(FUTURE_SLACK_MS) {
        p.add(
            field,
            "in the future by more than 5 minutes: check the submitting system's clock and time zone (UTC)",
        );
    }
    ms
}

/// A required time, not before 2000-01-01. Returns 0 when it is wrong.
fn any_time(p: &mut Problems, field: &str, ms: i64, what: &str) -> i64 {
    if ms == 0 {
        p.add(
            field,
            format!("missing: set when {what}, in milliseconds since 1970-01-01 UTC"),
        );
        0
    } else if ms < OBSERVED_MIN_UNIX_MS {
        p.add(
            field,
            "before 2000-01-01: the value must be in milliseconds (not seconds) since 1970-01-01 UTC",
        );
        0
    } else {
        ms
    }
}

/// An answer to an invitation, a handover or an inspection plan.
fn case_answer(p: &mut Problems, field: &str, a: &CaseAnswer) -> CaseAnswer {
    CaseAnswer {
        accept: a.accept,
        message: text_field(
            p,
            &format!("{field}.message"),
            &a.message,
            0,
            MESSAGE_MAX,
            true,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use case_event::Event;
    use lienthong_proto::v1::{Business, Person, Vehicle};
    use unicode_normalization::UnicodeNormalization;

    const NOW: i64 = 1_795_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn id(b: u8) -> Vec<u8> {
        vec![b; 32]
    }

    fn vehicle(plate: &str) -> Subject {
        Subject {
            kind: Some(subject::Kind::Vehicle(Vehicle {
                plate: plate.into(),
                country: String::new(),
                description: "xe tải".into(),
            })),
        }
    }

    /// A Vietnamese vehicle as stored: canonical plate, country filled in.
    fn stored_vehicle(plate: &str) -> Subject {
        Subject {
            kind: Some(subject::Kind::Vehicle(Vehicle {
                plate: plate.into(),
                country: "VN".into(),
                description: "xe tải".into(),
            })),
        }
    }

    fn business(tax_code: &str) -> Subject {
        Subject {
            kind: Some(subject::Kind::Business(Business {
                tax_code: tax_code.into(),
                name: "Công ty TNHH ABC".into(),
                address: String::new(),
            })),
        }
    }

    fn person(citizen_id: &str) -> Subject {
        Subject {
            kind: Some(subject::Kind::Person(Person {
                citizen_id: citizen_id.into(),
                full_name: "Nguyễn Văn A".into(),
            })),
        }
    }

    fn place() -> Location {
        Location {
            province: "20".into(),
            commune: "  Tân Thanh ".into(),
            address: "QL1A".into(),
        }
    }

    fn cigarettes() -> Goods {
        Goods {
            hs_code: "2402.20.90".into(),
            description: " Thuốc lá điếu ".into(),
            quantity: 50.0,
            unit: "thùng".into(),
            estimated_value_vnd: 150_000_000,
        }
    }

    // --- case events -----------------------------------------------------

    fn with(event: Event) -> CaseEvent {
        CaseEvent {
            case_id: id(9),
            parents: vec![],
            reference: "case-2026-0001".into(),
            history: vec![],
            event: Some(event),
        }
    }

    fn good_opened() -> CaseEvent {
        let mut e = with(Event::Opened(CaseOpened {
            title: "  Buôn lậu thuốc lá qua Tân Thanh  ".into(),
            summary: "Hàng giả".nfd().collect(),
            category: Category::Smuggling as i32,
            alert_ids: vec![id(1), id(2)],
            invite: vec!["24".into(), "01".into(), "24".into()],
            subjects: vec![vehicle("12c-045.67"), business("0101234567001")],
        }));
        e.case_id.clear();
        e
    }
    fn good_invitation() -> CaseEvent {
        with(Event::Invitation(CaseInvitation {
            provinces: vec!["31".into(), "22".into()],
            message: "Hàng đi qua địa bàn.\nĐề nghị phối hợp.".into(),
        }))
    }
    fn good_invitation_answer() -> CaseEvent {
        with(Event::InvitationAnswer(CaseAnswer {
            accept: true,
            message: " Đồng ý ".into(),
        }))
    }
    fn good_handover() -> CaseEvent {
        with(Event::Handover(CaseHandover {
            to: "22".into(),
            reason: "Đầu mối ở Quảng Ninh".into(),
        }))
    }
    fn good_handover_answer() -> CaseEvent {
        with(Event::HandoverAnswer(CaseAnswer {
            accept: false,
            message: String::new(),
        }))
    }
    fn good_inspection_result() -> CaseEvent {
        with(Event::InspectionResult(InspectionResult {
            inspected_unix_ms: NOW - HOUR,
            location: Some(place()),
            findings: " Phát hiện 50 thùng thuốc lá không hóa đơn ".into(),
            violation_found: true,
        }))
    }
    fn good_seizure() -> CaseEvent {
        with(Event::Seizure(SeizureRecord {
            record_number: " 12/BB-TG ".into(),
            seized_unix_ms: NOW - HOUR,
            location: Some(place()),
            goods: vec![cigarettes()],
        }))
    }
    fn good_decision() -> CaseEvent {
        with(Event::Decision(AdministrativeDecision {
            decision_number: "34/QĐ-XPHC".into(),
            decided_unix_ms: NOW - HOUR,
            violator: Some(vehicle("29A-123.45")),
            fine_vnd: 80_000_000,
            measures: "Tịch thu hàng hóa".into(),
        }))
    }
    fn good_transfer() -> CaseEvent {
        with(Event::Transfer(CaseTransfer {
            target: TransferTarget::Police as i32,
            agency: "Công an tỉnh Lạng Sơn".into(),
            reason: "Dấu hiệu tội phạm buôn lậu".into(),
        }))
    }
    fn good_closure() -> CaseEvent {
        with(Event::Closure(CaseClosure {
            outcome: CaseOutcome::Sanctioned as i32,
            summary: "Đã xử phạt và tịch thu.".into(),
        }))
    }

    const GOOD_CASE_EVENTS: &[fn() -> CaseEvent] = &[
        good_opened,
        good_invitation,
        good_invitation_answer,
        good_handover,
        good_handover_answer,
        good_inspection_result,
        good_seizure,
        good_decision,
        good_transfer,
        good_closure,
    ];

    fn case_errors(e: &CaseEvent) -> Vec<String> {
        match validate_case_event(Some(e), NOW) {
            Ok(_) => vec![],
            Err(InvalidInput(v)) => v.into_iter().map(|e| e.field).collect(),
        }
    }

    macro_rules! accessor {
        ($name:ident, $variant:ident, $ty:ty) => {
            fn $name(e: &mut CaseEvent) -> &mut $ty {
                match e.event.as_mut() {
                    Some(Event::$variant(x)) => x,
                    _ => unreachable!(),
                }
            }
        };
    }
    accessor!(opened, Opened, CaseOpened);
    accessor!(invitation, Invitation, CaseInvitation);
    accessor!(invitation_answer, InvitationAnswer, CaseAnswer);
    accessor!(handover, Handover, CaseHandover);
    accessor!(handover_answer, HandoverAnswer, CaseAnswer);
    accessor!(result, InspectionResult, InspectionResult);
    accessor!(seizure, Seizure, SeizureRecord);
    accessor!(decision, Decision, AdministrativeDecision);
    accessor!(transfer, Transfer, CaseTransfer);
    accessor!(closure, Closure, CaseClosure);

    fn goods0(e: &mut CaseEvent) -> &mut Goods {
        &mut seizure(e).goods[0]
    }

    #[test]
    fn every_good_case_event_is_valid() {
        for make in GOOD_CASE_EVENTS {
            let e = make();
            assert_eq!(case_errors(&e), Vec::<String>::new(), "{e:?}");
        }
    }

    #[test]
    fn good_case_events_are_normalised() {
        let v = validate_case_event(Some(&good_opened()), NOW).unwrap();
        let mut o = good_opened();
        {
            let x = opened(&mut o);
            x.title = "Buôn lậu thuốc lá qua Tân Thanh".into();
            x.summary = "Hàng giả".into();
            x.invite = vec!["01".into(), "24".into()];
            x.subjects = vec![stored_vehicle("12C04567"), business("0101234567-001")];
        }
        assert_eq!(v, o);
        assert_ne!(
            good_opened().event,
            o.event,
            "the input was not already normal"
        );

        let v = validate_case_event(Some(&good_decision()), NOW).unwrap();
        let mut o = good_decision();
        decision(&mut o).violator = Some(stored_vehicle("29A12345"));
        assert_eq!(v, o);

        let v = validate_case_event(Some(&good_seizure()), NOW).unwrap();
        let mut o = good_seizure();
        {
            let s = seizure(&mut o);
            s.record_number = "12/BB-TG".into();
            s.location.as_mut().unwrap().commune = "Tân Thanh".into();
            s.goods[0].hs_code = "24022090".into();
            s.goods[0].description = "Thuốc lá điếu".into();
        }
        assert_eq!(v, o);

        let v = validate_case_event(Some(&good_invitation()), NOW).unwrap();
        let mut o = good_invitation();
        invitation(&mut o).provinces = vec!["22".into(), "31".into()];
        assert_eq!(v, o);

        let v = validate_case_event(Some(&good_invitation_answer()), NOW).unwrap();
        let mut o = good_invitation_answer();
        invitation_answer(&mut o).message = "Đồng ý".into();
        assert_eq!(v, o);

        let v = validate_case_event(Some(&good_inspection_result()), NOW).unwrap();
        let mut o = good_inspection_result();
        {
            let r = result(&mut o);
            r.findings = "Phát hiện 50 thùng thuốc lá không hóa đơn".into();
            r.location.as_mut().unwrap().commune = "Tân Thanh".into();
        }
        assert_eq!(v, o);

        // Already-normal events come back unchanged.
        for make in [
            good_handover,
            good_handover_answer,
            good_transfer,
            good_closure,
        ] {
            assert_eq!(validate_case_event(Some(&make()), NOW).unwrap(), make());
        }
    }

    type CaseRow = (&'static str, fn() -> CaseEvent, fn(&mut CaseEvent));

    /// Table: one broken field per row; the error names exactly that field.
    #[test]
    fn each_invalid_case_event_field_is_named() {
        let table: &[CaseRow] = &[
            ("case_event.case_id", good_opened, |e| e.case_id = id(1)),
            ("case_event.case_id", good_invitation, |e| e.case_id.clear()),
            ("case_event.case_id", good_closure, |e| {
                e.case_id = vec![1; 31]
            }),
            ("case_event.parents", good_invitation, |e| {
                e.parents = vec![id(3)]
            }),
            ("case_event.reference", good_invitation, |e| {
                e.reference.clear()
            }),
            ("case_event.reference", good_invitation, |e| {
                e.reference = "has space".into()
            }),
            ("case_event.reference", good_invitation, |e| {
                e.reference = "x".repeat(129)
            }),
            ("case_event.history", good_invitation, |e| {
                e.history = vec![vec![1, 2]]
            }),
            ("case_event.event", good_invitation, |e| e.event = None),
            ("case_event.opened.title", good_opened, |e| {
                opened(e).title = "   ".into()
            }),
            ("case_event.opened.title", good_opened, |e| {
                opened(e).title = "x".repeat(301)
            }),
            ("case_event.opened.title", good_opened, |e| {
                opened(e).title = "two\nlines".into()
            }),
            ("case_event.opened.summary", good_opened, |e| {
                opened(e).summary = "x".repeat(20_001)
            }),
            ("case_event.opened.summary", good_opened, |e| {
                opened(e).summary = "bell\u{7}".into()
            }),
            ("case_event.opened.category", good_opened, |e| {
                opened(e).category = 0
            }),
            ("case_event.opened.category", good_opened, |e| {
                opened(e).category = 99
            }),
            ("case_event.opened.alert_ids", good_opened, |e| {
                opened(e).alert_ids = (0..=100).map(|i| id(i as u8)).collect()
            }),
            ("case_event.opened.alert_ids[1]", good_opened, |e| {
                opened(e).alert_ids[1] = vec![2; 31]
            }),
            ("case_event.opened.alert_ids[1]", good_opened, |e| {
                opened(e).alert_ids[1] = id(1)
            }),
            ("case_event.opened.invite", good_opened, |e| {
                opened(e).invite = vec!["01".into(); 35]
            }),
            ("case_event.opened.invite[1]", good_opened, |e| {
                opened(e).invite[1] = "02".into()
            }),
            ("case_event.opened.subjects", good_opened, |e| {
                opened(e).subjects = vec![vehicle("29A12345"); 101]
            }),
            (
                "case_event.opened.subjects[0].vehicle.plate",
                good_opened,
                |e| opened(e).subjects[0] = vehicle("ABC"),
            ),
            ("case_event.opened.subjects[1]", good_opened, |e| {
                opened(e).subjects[1] = Subject { kind: None }
            }),
            ("case_event.invitation.provinces", good_invitation, |e| {
                invitation(e).provinces.clear()
            }),
            ("case_event.invitation.provinces[1]", good_invitation, |e| {
                invitation(e).provinces[1] = "Quảng Ninh".into()
            }),
            ("case_event.invitation.message", good_invitation, |e| {
                invitation(e).message = "x".repeat(2_001)
            }),
            (
                "case_event.invitation_answer.message",
                good_invitation_answer,
                |e| invitation_answer(e).message = "x".repeat(2_001),
            ),
            (
                "case_event.handover_answer.message",
                good_handover_answer,
                |e| handover_answer(e).message = "nul\u{0}".into(),
            ),
            ("case_event.handover.to", good_handover, |e| {
                handover(e).to.clear()
            }),
            ("case_event.handover.to", good_handover, |e| {
                handover(e).to = "99".into()
            }),
            ("case_event.handover.reason", good_handover, |e| {
                handover(e).reason = " \n ".into()
            }),
            ("case_event.handover.reason", good_handover, |e| {
                handover(e).reason = "x".repeat(2_001)
            }),
            (
                "case_event.inspection_result.inspected_unix_ms",
                good_inspection_result,
                |e| result(e).inspected_unix_ms = 0,
            ),
            (
                "case_event.inspection_result.inspected_unix_ms",
                good_inspection_result,
                |e| result(e).inspected_unix_ms = NOW / 1000,
            ),
            (
                "case_event.inspection_result.inspected_unix_ms",
                good_inspection_result,
                |e| result(e).inspected_unix_ms = NOW + 6 * 60 * 1000,
            ),
            (
                "case_event.inspection_result.location",
                good_inspection_result,
                |e| result(e).location = None,
            ),
            (
                "case_event.inspection_result.location.province",
                good_inspection_result,
                |e| result(e).location.as_mut().unwrap().province = "02".into(),
            ),
            (
                "case_event.inspection_result.location.commune",
                good_inspection_result,
                |e| result(e).location.as_mut().unwrap().commune = "x".repeat(201),
            ),
            (
                "case_event.inspection_result.findings",
                good_inspection_result,
                |e| result(e).findings.clear(),
            ),
            ("case_event.seizure.record_number", good_seizure, |e| {
                seizure(e).record_number.clear()
            }),
            ("case_event.seizure.record_number", good_seizure, |e| {
                seizure(e).record_number = "x".repeat(101)
            }),
            ("case_event.seizure.seized_unix_ms", good_seizure, |e| {
                seizure(e).seized_unix_ms = NOW + HOUR
            }),
            ("case_event.seizure.location", good_seizure, |e| {
                seizure(e).location = None
            }),
            ("case_event.seizure.location.province", good_seizure, |e| {
                seizure(e).location.as_mut().unwrap().province.clear()
            }),
            ("case_event.seizure.goods", good_seizure, |e| {
                seizure(e).goods.clear()
            }),
            ("case_event.seizure.goods", good_seizure, |e| {
                seizure(e).goods = vec![cigarettes(); 101]
            }),
            ("case_event.seizure.goods[0].hs_code", good_seizure, |e| {
                goods0(e).hs_code = "24".into()
            }),
            (
                "case_event.seizure.goods[0].description",
                good_seizure,
                |e| goods0(e).description.clear(),
            ),
            ("case_event.seizure.goods[0].quantity", good_seizure, |e| {
                goods0(e).quantity = 0.0
            }),
            ("case_event.seizure.goods[0].quantity", good_seizure, |e| {
                goods0(e).quantity = -1.0
            }),
            ("case_event.seizure.goods[0].quantity", good_seizure, |e| {
                goods0(e).quantity = f64::INFINITY
            }),
            ("case_event.seizure.goods[0].unit", good_seizure, |e| {
                goods0(e).unit = "  ".into()
            }),
            ("case_event.seizure.goods[1].unit", good_seizure, |e| {
                let mut g = cigarettes();
                g.unit = "x".repeat(21);
                seizure(e).goods.push(g)
            }),
            ("case_event.decision.decision_number", good_decision, |e| {
                decision(e).decision_number.clear()
            }),
            ("case_event.decision.decided_unix_ms", good_decision, |e| {
                decision(e).decided_unix_ms = 1
            }),
            ("case_event.decision.violator", good_decision, |e| {
                decision(e).violator = None
            }),
            ("case_event.decision.violator", good_decision, |e| {
                decision(e).violator = Some(Subject { kind: None })
            }),
            (
                "case_event.decision.violator.person.citizen_id",
                good_decision,
                |e| decision(e).violator = Some(person("123")),
            ),
            (
                "case_event.decision.violator.vehicle.plate",
                good_decision,
                |e| decision(e).violator = Some(vehicle("29-123.45")),
            ),
            ("case_event.decision.measures", good_decision, |e| {
                decision(e).measures = "x".repeat(2_001)
            }),
            ("case_event.decision.fine_vnd", good_decision, |e| {
                decision(e).fine_vnd = 1_000_000_000_000_001
            }),
            (
                "case_event.seizure.goods[0].estimated_value_vnd",
                good_seizure,
                |e| goods0(e).estimated_value_vnd = u64::MAX,
            ),
            ("case_event.transfer.target", good_transfer, |e| {
                transfer(e).target = 0
            }),
            ("case_event.transfer.target", good_transfer, |e| {
                transfer(e).target = 7
            }),
            ("case_event.transfer.agency", good_transfer, |e| {
                transfer(e).agency.clear()
            }),
            ("case_event.transfer.agency", good_transfer, |e| {
                transfer(e).agency = "x".repeat(301)
            }),
            ("case_event.transfer.reason", good_transfer, |e| {
                transfer(e).reason.clear()
            }),
            ("case_event.closure.outcome", good_closure, |e| {
                closure(e).outcome = 0
            }),
            ("case_event.closure.outcome", good_closure, |e| {
                closure(e).outcome = -3
            }),
            ("case_event.closure.summary", good_closure, |e| {
                closure(e).summary = "\t".into()
            }),
        ];
        for (field, make, breaker) in table {
            let mut e = make();
            breaker(&mut e);
            assert_eq!(case_errors(&e), vec![field.to_string()], "breaking {field}");
        }
    }

    #[test]
    fn seized_goods_without_quantity_or_unit_report_both() {
        let mut e = good_seizure();
        goods0(&mut e).quantity = 0.0;
        goods0(&mut e).unit.clear();
        assert_eq!(
            case_errors(&e),
            [
                "case_event.seizure.goods[0].quantity",
                "case_event.seizure.goods[0].unit"
            ]
        );
    }

    #[test]
    fn all_case_event_errors_are_reported_at_once() {
        let mut e = good_opened();
        e.reference.clear();
        opened(&mut e).title.clear();
        opened(&mut e).invite[0] = "99".into();
        assert_eq!(
            case_errors(&e),
            [
                "case_event.reference",
                "case_event.opened.title",
                "case_event.opened.invite[0]"
            ]
        );
        let err = validate_case_event(Some(&e), NOW).unwrap_err();
        assert!(err.0.iter().all(|x| !x.problem.is_empty()));
        assert_eq!(
            validate_case_event(None, NOW).unwrap_err().0[0].field,
            "case_event"
        );
    }

    // --- assistance ------------------------------------------------------

    fn good_request() -> AssistanceRequest {
        AssistanceRequest {
            reference: "req-2026-7".into(),
            to: "22".into(),
            topic: AssistanceTopic::Vehicle as i32,
            question: " Xác minh chủ xe và hành trình ngày 12/3. ".into(),
            subjects: vec![vehicle("14c-123.45")],
            case_id: id(9),
            due_unix_ms: NOW + 24 * HOUR,
        }
    }

    fn request_errors(r: &AssistanceRequest) -> Vec<String> {
        match validate_assistance_request(Some(r), NOW) {
            Ok(_) => vec![],
            Err(InvalidInput(v)) => v.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn a_good_assistance_request_is_normalised() {
        let v = validate_assistance_request(Some(&good_request()), NOW).unwrap();
        let mut o = good_request();
        o.question = "Xác minh chủ xe và hành trình ngày 12/3.".into();
        o.subjects = vec![stored_vehicle("14C12345")];
        assert_eq!(v, o);
        // Optional fields may be left out.
        let mut r = good_request();
        r.case_id.clear();
        r.due_unix_ms = 0;
        r.subjects.clear();
        assert_eq!(request_errors(&r), Vec::<String>::new());
    }

    #[test]
    fn each_invalid_assistance_request_field_is_named() {
        type Breaker = fn(&mut AssistanceRequest);
        let table: &[(&str, Breaker)] = &[
            ("assistance_request.reference", |r| r.reference.clear()),
            ("assistance_request.reference", |r| {
                r.reference = "a b".into()
            }),
            ("assistance_request.to", |r| r.to.clear()),
            ("assistance_request.to", |r| r.to = "2".into()),
            ("assistance_request.topic", |r| r.topic = 0),
            ("assistance_request.topic", |r| r.topic = 6),
            ("assistance_request.question", |r| r.question.clear()),
            ("assistance_request.question", |r| {
                r.question = "x".repeat(20_001)
            }),
            ("assistance_request.subjects", |r| {
                r.subjects = vec![vehicle("14C12345"); 101]
            }),
            ("assistance_request.subjects[0].vehicle.plate", |r| {
                r.subjects[0] = vehicle("???")
            }),
            ("assistance_request.case_id", |r| r.case_id = vec![1; 16]),
            ("assistance_request.due_unix_ms", |r| {
                r.due_unix_ms = NOW - 1
            }),
            ("assistance_request.due_unix_ms", |r| r.due_unix_ms = NOW),
            ("assistance_request.due_unix_ms", |r| r.due_unix_ms = -5),
        ];
        for (field, breaker) in table {
            let mut r = good_request();
            breaker(&mut r);
            assert_eq!(
                request_errors(&r),
                vec![field.to_string()],
                "breaking {field}"
            );
        }
        let mut r = good_request();
        r.due_unix_ms = 1;
        r.reference.clear();
        r.case_id = vec![1];
        assert_eq!(
            request_errors(&r),
            [
                "assistance_request.reference",
                "assistance_request.case_id",
                "assistance_request.due_unix_ms"
            ]
        );
        assert_eq!(
            validate_assistance_request(None, NOW).unwrap_err().0[0].field,
            "assistance_request"
        );
    }

    fn good_answer() -> AssistanceAnswer {
        AssistanceAnswer {
            request_id: id(4),
            reference: "ans-2026-7".into(),
            finding: AssistanceFinding::Partial as i32,
            answer: "Xe đăng ký tại Quảng Ninh; không rõ hành trình.".into(),
            subjects: vec![person(" 001085012345 ")],
        }
    }

    fn answer_errors(a: &AssistanceAnswer) -> Vec<String> {
        match validate_assistance_answer(Some(a)) {
            Ok(_) => vec![],
            Err(InvalidInput(v)) => v.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn a_good_assistance_answer_is_normalised() {
        let v = validate_assistance_answer(Some(&good_answer())).unwrap();
        let mut o = good_answer();
        o.subjects = vec![person("001085012345")];
        assert_eq!(v, o);
    }

    #[test]
    fn each_invalid_assistance_answer_field_is_named() {
        type Breaker = fn(&mut AssistanceAnswer);
        let table: &[(&str, Breaker)] = &[
            ("assistance_answer.request_id", |a| a.request_id.clear()),
            ("assistance_answer.request_id", |a| {
                a.request_id = vec![0; 33]
            }),
            ("assistance_answer.reference", |a| a.reference.clear()),
            ("assistance_answer.finding", |a| a.finding = 0),
            ("assistance_answer.finding", |a| a.finding = 5),
            ("assistance_answer.answer", |a| a.answer = " ".into()),
            ("assistance_answer.subjects", |a| {
                a.subjects = vec![person("001085012345"); 101]
            }),
            ("assistance_answer.subjects[0].person.citizen_id", |a| {
                a.subjects[0] = person("0010850")
            }),
        ];
        for (field, breaker) in table {
            let mut a = good_answer();
            breaker(&mut a);
            assert_eq!(
                answer_errors(&a),
                vec![field.to_string()],
                "breaking {field}"
            );
        }
        assert_eq!(
            validate_assistance_answer(None).unwrap_err().0[0].field,
            "assistance_answer"
        );
    }

    // --- inspections -----------------------------------------------------

    fn good_plan() -> InspectionEvent {
        InspectionEvent {
            plan_id: vec![],
            reference: "plan-2026-q2".into(),
            event: Some(inspection_event::Event::Plan(InspectionPlan {
                title: " Kiểm tra liên ngành mỹ phẩm ".into(),
                provinces: vec!["79".into(), "01".into(), "79".into()],
                starts_unix_ms: NOW + 24 * HOUR,
                ends_unix_ms: NOW + 10 * 24 * HOUR,
                category: Category::Unspecified as i32,
                targets: vec![business("0101234567")],
                scope: "Cửa hàng mỹ phẩm".into(),
            })),
        }
    }
    fn good_acceptance() -> InspectionEvent {
        InspectionEvent {
            plan_id: id(5),
            reference: "plan-2026-q2-ok".into(),
            event: Some(inspection_event::Event::Acceptance(CaseAnswer {
                accept: true,
                message: String::new(),
            })),
        }
    }
    fn good_report() -> InspectionEvent {
        InspectionEvent {
            plan_id: id(5),
            reference: "plan-2026-q2-report".into(),
            event: Some(inspection_event::Event::Report(InspectionReport {
                findings: "Kiểm tra 12 cơ sở, 3 vi phạm.".into(),
                inspected: 12,
                violations: 3,
                fines_vnd: 45_000_000,
                seized_value_vnd: 120_000_000,
                case_ids: vec![id(6), id(7)],
            })),
        }
    }

    fn plan(e: &mut InspectionEvent) -> &mut InspectionPlan {
        match e.event.as_mut() {
            Some(inspection_event::Event::Plan(x)) => x,
            _ => unreachable!(),
        }
    }
    fn acceptance(e: &mut InspectionEvent) -> &mut CaseAnswer {
        match e.event.as_mut() {
            Some(inspection_event::Event::Acceptance(x)) => x,
            _ => unreachable!(),
        }
    }
    fn report(e: &mut InspectionEvent) -> &mut InspectionReport {
        match e.event.as_mut() {
            Some(inspection_event::Event::Report(x)) => x,
            _ => unreachable!(),
        }
    }

    fn inspection_errors(e: &InspectionEvent) -> Vec<String> {
        match validate_inspection_event(Some(e), NOW) {
            Ok(_) => vec![],
            Err(InvalidInput(v)) => v.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn good_inspection_events_are_normalised() {
        let v = validate_inspection_event(Some(&good_plan()), NOW).unwrap();
        let mut o = good_plan();
        {
            let pl = plan(&mut o);
            pl.title = "Kiểm tra liên ngành mỹ phẩm".into();
            pl.provinces = vec!["01".into(), "79".into()];
        }
        assert_eq!(v, o);
        for make in [good_acceptance, good_report] {
            assert_eq!(
                validate_inspection_event(Some(&make()), NOW).unwrap(),
                make()
            );
        }
        // A one-day plan: starts == ends.
        let mut e = good_plan();
        plan(&mut e).ends_unix_ms = plan(&mut e).starts_unix_ms;
        assert_eq!(inspection_errors(&e), Vec::<String>::new());
    }

    type InspectionRow = (
        &'static str,
        fn() -> InspectionEvent,
        fn(&mut InspectionEvent),
    );

    #[test]
    fn each_invalid_inspection_field_is_named() {
        let table: &[InspectionRow] = &[
            ("inspection.plan_id", good_plan, |e| e.plan_id = id(1)),
            ("inspection.plan_id", good_acceptance, |e| e.plan_id.clear()),
            ("inspection.plan_id", good_report, |e| {
                e.plan_id = vec![1; 8]
            }),
            ("inspection.reference", good_report, |e| e.reference.clear()),
            ("inspection.event", good_report, |e| e.event = None),
            ("inspection.plan.title", good_plan, |e| {
                plan(e).title.clear()
            }),
            ("inspection.plan.title", good_plan, |e| {
                plan(e).title = "x".repeat(301)
            }),
            ("inspection.plan.provinces", good_plan, |e| {
                plan(e).provinces.clear()
            }),
            ("inspection.plan.provinces", good_plan, |e| {
                plan(e).provinces = vec!["01".into(); 35]
            }),
            ("inspection.plan.provinces[2]", good_plan, |e| {
                plan(e).provinces[2] = "100".into()
            }),
            ("inspection.plan.starts_unix_ms", good_plan, |e| {
                plan(e).starts_unix_ms = 0
            }),
            ("inspection.plan.starts_unix_ms", good_plan, |e| {
                plan(e).starts_unix_ms = NOW / 1000
            }),
            ("inspection.plan.ends_unix_ms", good_plan, |e| {
                plan(e).ends_unix_ms = 0
            }),
            ("inspection.plan.ends_unix_ms", good_plan, |e| {
                plan(e).ends_unix_ms = NOW
            }),
            ("inspection.plan.category", good_plan, |e| {
                plan(e).category = 42
            }),
            ("inspection.plan.targets", good_plan, |e| {
                plan(e).targets = vec![business("0101234567"); 101]
            }),
            (
                "inspection.plan.targets[0].business.tax_code",
                good_plan,
                |e| plan(e).targets[0] = business("123"),
            ),
            ("inspection.plan.scope", good_plan, |e| {
                plan(e).scope = "x".repeat(20_001)
            }),
            ("inspection.acceptance.message", good_acceptance, |e| {
                acceptance(e).message = "x".repeat(2_001)
            }),
            ("inspection.report.findings", good_report, |e| {
                report(e).findings.clear()
            }),
            ("inspection.report.fines_vnd", good_report, |e| {
                report(e).fines_vnd = u64::MAX
            }),
            ("inspection.report.seized_value_vnd", good_report, |e| {
                report(e).seized_value_vnd = 2_000_000_000_000_000
            }),
            ("inspection.report.violations", good_report, |e| {
                report(e).violations = 13
            }),
            ("inspection.report.case_ids", good_report, |e| {
                report(e).case_ids = vec![id(1); 101]
            }),
            ("inspection.report.case_ids[0]", good_report, |e| {
                report(e).case_ids[0] = vec![]
            }),
            ("inspection.report.case_ids[1]", good_report, |e| {
                report(e).case_ids[1] = id(6)
            }),
        ];
        for (field, make, breaker) in table {
            let mut e = make();
            breaker(&mut e);
            assert_eq!(
                inspection_errors(&e),
                vec![field.to_string()],
                "breaking {field}"
            );
        }
        let mut e = good_report();
        report(&mut e).violations = 20;
        report(&mut e).findings.clear();
        assert_eq!(
            inspection_errors(&e),
            ["inspection.report.findings", "inspection.report.violations"]
        );
        assert_eq!(
            validate_inspection_event(None, NOW).unwrap_err().0[0].field,
            "inspection"
        );
    }

    // --- meetings --------------------------------------------------------

    fn good_meeting() -> Meeting {
        Meeting {
            reference: "hop-2026-03".into(),
            title: "Giao ban quý I".into(),
            held_unix_ms: NOW - 2 * HOUR,
            place: " UBND tỉnh Lạng Sơn ".into(),
            participants: vec!["22".into(), "04".into(), "15".into()],
            minutes: "Đánh giá tình hình buôn lậu qua biên giới.".into(),
            decisions: vec![" Tăng cường tuần tra ".into(), "Họp lại vào quý II".into()],
        }
    }

    fn meeting_errors(m: &Meeting) -> Vec<String> {
        match validate_meeting(Some(m), NOW) {
            Ok(_) => vec![],
            Err(InvalidInput(v)) => v.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn a_good_meeting_is_normalised() {
        let v = validate_meeting(Some(&good_meeting()), NOW).unwrap();
        let mut o = good_meeting();
        o.place = "UBND tỉnh Lạng Sơn".into();
        o.participants = vec!["04".into(), "15".into(), "22".into()];
        o.decisions[0] = "Tăng cường tuần tra".into();
        assert_eq!(v, o);
        // Within the clock slack.
        let mut m = good_meeting();
        m.held_unix_ms = NOW + 4 * 60 * 1000;
        assert_eq!(meeting_errors(&m), Vec::<String>::new());
    }

    #[test]
    fn each_invalid_meeting_field_is_named() {
        type Breaker = fn(&mut Meeting);
        let table: &[(&str, Breaker)] = &[
            ("meeting.reference", |m| m.reference.clear()),
            ("meeting.title", |m| m.title.clear()),
            ("meeting.title", |m| m.title = "a\u{1b}b".into()),
            ("meeting.held_unix_ms", |m| m.held_unix_ms = 0),
            ("meeting.held_unix_ms", |m| m.held_unix_ms = NOW / 1000),
            ("meeting.held_unix_ms", |m| {
                m.held_unix_ms = NOW + 6 * 60 * 1000
            }),
            ("meeting.place", |m| m.place = "x".repeat(301)),
            ("meeting.participants", |m| m.participants.clear()),
            ("meeting.participants[0]", |m| m.participants[0] = "".into()),
            ("meeting.minutes", |m| m.minutes.clear()),
            ("meeting.minutes", |m| m.minutes = "x".repeat(20_001)),
            ("meeting.decisions", |m| m.decisions = vec!["x".into(); 101]),
            ("meeting.decisions[1]", |m| m.decisions[1] = " ".into()),
            ("meeting.decisions[0]", |m| {
                m.decisions[0] = "x".repeat(2_001)
            }),
        ];
        for (field, breaker) in table {
            let mut m = good_meeting();
            breaker(&mut m);
            assert_eq!(
                meeting_errors(&m),
                vec![field.to_string()],
                "breaking {field}"
            );
        }
        assert_eq!(
            validate_meeting(None, NOW).unwrap_err().0[0].field,
            "meeting"
        );
    }

    // --- reasons ---------------------------------------------------------

    #[test]
    fn reasons_are_trimmed_nfc_and_bounded() {
        let nfd: String = " Sai biển số\n\tđã sửa ".nfd().collect();
        assert_eq!(
            validate_reason("retraction.reason", &nfd).unwrap(),
            "Sai biển số\n\tđã sửa"
        );
        assert_eq!(
            validate_reason("retraction.reason", &"ế".repeat(2_000))
                .unwrap()
                .chars()
                .count(),
            2_000
        );
        for bad in ["", "   ", "a\u{0}b", &"x".repeat(2_001)] {
            let err = validate_reason("retraction.reason", bad).unwrap_err();
            assert_eq!(err.0.len(), 1, "{bad:?}");
            assert_eq!(err.0[0].field, "retraction.reason", "{bad:?}");
        }
    }
}
