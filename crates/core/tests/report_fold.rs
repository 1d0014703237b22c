//! The periodic report (crates/core/src/coordination/report.rs) over one
//! small federation: what counts in the period, for whom, and what does
//! not (refused or retracted case steps, entries outside the period,
//! requests created before it).
//!
//! Period: [10 000, 20 000) ms. Cases are folded with `fold_case` and
//! requests with `assistance_state`, as a node does before it reports.

use lienthong_core::coordination::assistance::{AnswerEntry, RequestEntry, assistance_state};
use lienthong_core::coordination::case::{CaseEntry, fold_case};
use lienthong_core::coordination::report::{ReportEntry, report};
use lienthong_core::proto::{
    AdministrativeDecision, Alert, AssistanceAnswer, AssistanceRequest, AssistanceState,
    AssistanceStatus, CaseAnswer, CaseClosure, CaseEvent, CaseOpened, CaseOutcome, CaseState,
    CaseStatus, Category, CategoryFigures, Goods, InspectionEvent, InspectionPlan,
    InspectionReport, Meeting, ProvinceFigures, SeizureRecord, case_event::Event,
    entry_body::Payload, inspection_event,
};
use sha2::{Digest, Sha256};

const FROM: i64 = 10_000;
const TO: i64 = 20_000;
/// When the report is computed (after every deadline but r4's).
const NOW: i64 = 30_000;

fn id(label: &str) -> [u8; 32] {
    Sha256::digest(format!("lienthong report_fold test {label}")).into()
}

/// One held entry.
struct Held {
    label: &'static str,
    author: &'static str,
    at: i64,
    payload: Payload,
    retracted: bool,
}

fn held(label: &'static str, author: &'static str, at: i64, payload: Payload) -> Held {
    Held {
        label,
        author,
        at,
        payload,
        retracted: false,
    }
}

fn retracted(mut h: Held) -> Held {
    h.retracted = true;
    h
}

fn alert(category: Category) -> Payload {
    Payload::Alert(Alert {
        reference: "a".into(),
        title: "Hàng lậu".into(),
        category: category as i32,
        ..Default::default()
    })
}

/// An event of the case whose opening is labelled `case`, naming `parents`.
fn case_event(case: &str, parents: &[&str], event: Event) -> Payload {
    Payload::CaseEvent(CaseEvent {
        case_id: if matches!(event, Event::Opened(_)) {
            Vec::new()
        } else {
            id(case).to_vec()
        },
        parents: parents.iter().map(|p| id(p).to_vec()).collect(),
        event: Some(event),
        ..Default::default()
    })
}

fn opened(category: Category, invite: &[&str]) -> Event {
    Event::Opened(CaseOpened {
        title: "Vụ việc".into(),
        category: category as i32,
        invite: invite.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    })
}

fn seizure(values: &[u64]) -> Event {
    Event::Seizure(SeizureRecord {
        record_number: "BB-1".into(),
        goods: values
            .iter()
            .map(|v| Goods {
                hs_code: "2402".into(),
                description: "Thuốc lá".into(),
                estimated_value_vnd: *v,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

fn decision(fine_vnd: u64) -> Event {
    Event::Decision(AdministrativeDecision {
        decision_number: "QĐ-1".into(),
        fine_vnd,
        ..Default::default()
    })
}

fn closure() -> Event {
    Event::Closure(CaseClosure {
        outcome: CaseOutcome::Sanctioned as i32,
        summary: "Xong".into(),
    })
}

fn request(to: &str, due_unix_ms: i64) -> Payload {
    Payload::AssistanceRequest(AssistanceRequest {
        reference: "r".into(),
        to: to.into(),
        question: "Xác minh doanh nghiệp".into(),
        due_unix_ms,
        ..Default::default()
    })
}

fn answer_to(request: &str) -> Payload {
    Payload::AssistanceAnswer(AssistanceAnswer {
        request_id: id(request).to_vec(),
        reference: "x".into(),
        answer: "Đã xác minh".into(),
        ..Default::default()
    })
}

/// Everything the reporting node holds.
fn entries() -> Vec<Held> {
    use Category::{Counterfeit, Smuggling};
    vec![
        // Alerts.
        held("a1", "20", 11_000, alert(Smuggling)),
        held("a2", "20", 12_000, alert(Counterfeit)),
        held("a3", "24", 13_000, alert(Smuggling)),
        held("a4-before", "01", FROM - 1, alert(Smuggling)),
        held("a5-at-end", "01", TO, alert(Smuggling)),
        retracted(held("a6-retracted", "24", 14_000, alert(Smuggling))),
        // A meeting, an inspection plan and a report under it.
        held(
            "m1",
            "01",
            15_000,
            Payload::Meeting(Meeting {
                reference: "m".into(),
                title: "Giao ban".into(),
                ..Default::default()
            }),
        ),
        held(
            "plan",
            "22",
            15_400,
            Payload::Inspection(InspectionEvent {
                event: Some(inspection_event::Event::Plan(InspectionPlan::default())),
                ..Default::default()
            }),
        ),
        held(
            "plan-report",
            "22",
            15_500,
            Payload::Inspection(InspectionEvent {
                plan_id: id("plan").to_vec(),
                event: Some(inspection_event::Event::Report(InspectionReport {
                    findings: "3 cơ sở".into(),
                    ..Default::default()
                })),
                ..Default::default()
            }),
        ),
        // Case A (counterfeit): opened by 20 before the period, closed in it.
        held(
            "A",
            "20",
            5_000,
            case_event("A", &[], opened(Counterfeit, &["24"])),
        ),
        held(
            "A-acc24",
            "24",
            6_000,
            case_event(
                "A",
                &["A"],
                Event::InvitationAnswer(CaseAnswer {
                    accept: true,
                    message: String::new(),
                }),
            ),
        ),
        held(
            "A-seize20",
            "20",
            11_000,
            case_event("A", &["A-acc24"], seizure(&[1_000_000, 500])),
        ),
        // 22 is not a member: refused, counts nothing.
        held(
            "A-seize22",
            "22",
            11_500,
            case_event("A", &["A-seize20"], seizure(&[9_999_999])),
        ),
        retracted(held(
            "A-seize-retracted",
            "20",
            11_600,
            case_event("A", &["A-seize22"], seizure(&[7_000_000])),
        )),
        held(
            "A-dec24",
            "24",
            12_500,
            case_event("A", &["A-seize-retracted"], decision(3_000_000)),
        ),
        held(
            "A-close",
            "20",
            16_000,
            case_event("A", &["A-dec24"], closure()),
        ),
        // After the closure: refused.
        held(
            "A-seize-after",
            "24",
            17_000,
            case_event("A", &["A-close"], seizure(&[4_000_000])),
        ),
        // Case B (smuggling): opened by 24 in the period, closed after it.
        held(
            "B",
            "24",
            12_000,
            case_event("B", &[], opened(Smuggling, &[])),
        ),
        held(
            "B-seize24",
            "24",
            13_000,
            case_event("B", &["B"], seizure(&[2_000_000])),
        ),
        held(
            "B-seize-late",
            "24",
            20_500,
            case_event("B", &["B-seize24"], seizure(&[8_000_000])),
        ),
        held(
            "B-close",
            "24",
            21_000,
            case_event("B", &["B-seize-late"], closure()),
        ),
        // Case C: opened on the period's last millisecond; case D just after.
        held(
            "C",
            "01",
            TO - 1,
            case_event("C", &[], opened(Smuggling, &[])),
        ),
        held("D", "01", TO, case_event("D", &[], opened(Smuggling, &[]))),
        // An event of a case not folded (not in `cases`): counts nothing.
        held(
            "E-seize",
            "24",
            13_500,
            case_event("E", &["E"], seizure(&[6_000_000])),
        ),
        // Assistance: r1 answered in time, r2 late, r3 overdue, r4 open,
        // r5 created before the period, r6 retracted, r7 answered by the
        // wrong province (so overdue).
        held("r1", "20", 11_000, request("24", 15_000)),
        held("r1-ans", "24", 14_000, answer_to("r1")),
        held("r2", "20", 12_000, request("24", 13_000)),
        held("r2-ans", "24", 16_000, answer_to("r2")),
        held("r3", "24", 13_000, request("01", 14_000)),
        held("r4", "01", 14_000, request("20", 40_000)),
        held("r5-before", "22", 9_000, request("24", 9_500)),
        retracted(held("r6-retracted", "20", 15_000, request("22", 16_000))),
        held("r7", "24", 16_000, request("20", 17_000)),
        held("r7-ans-by-01", "01", 16_500, answer_to("r7")),
    ]
}

fn fold_cases(all: &[Held]) -> Vec<CaseState> {
    ["A", "B", "C", "D"]
        .iter()
        .map(|case| {
            let case_id = id(case);
            let events: Vec<CaseEntry<'_>> = all
                .iter()
                .filter_map(|h| match &h.payload {
                    Payload::CaseEvent(e)
                        if e.case_id == case_id || (e.case_id.is_empty() && h.label == *case) =>
                    {
                        Some(CaseEntry {
                            id: id(h.label),
                            author: h.author,
                            created_unix_ms: h.at,
                            event: e,
                            retracted: h.retracted,
                        })
                    }
                    _ => None,
                })
                .collect();
            fold_case(&case_id, &events)
        })
        .collect()
}

fn assistance(all: &[Held]) -> Vec<AssistanceState> {
    let answers: Vec<AnswerEntry<'_>> = all
        .iter()
        .filter_map(|h| match &h.payload {
            Payload::AssistanceAnswer(a) => Some(AnswerEntry {
                id: id(h.label),
                author: h.author,
                created_unix_ms: h.at,
                answer: a,
                retracted: h.retracted,
            }),
            _ => None,
        })
        .collect();
    all.iter()
        .filter_map(|h| match &h.payload {
            Payload::AssistanceRequest(r) => Some(assistance_state(
                RequestEntry {
                    id: id(h.label),
                    author: h.author,
                    created_unix_ms: h.at,
                    request: r,
                    retracted: h.retracted,
                },
                &answers,
                &[],
                NOW,
            )),
            _ => None,
        })
        .collect()
}

fn figures(province: &str, f: impl FnOnce(&mut ProvinceFigures)) -> ProvinceFigures {
    let mut p = ProvinceFigures {
        province: province.into(),
        ..Default::default()
    };
    f(&mut p);
    p
}

#[test]
fn the_folds_the_report_relies_on() {
    let all = entries();
    let cases = fold_cases(&all);
    let [a, b, c, d] = &cases[..] else {
        panic!("four cases")
    };
    assert_eq!(a.status, CaseStatus::Closed as i32);
    assert_eq!(a.seized_value_vnd, 1_000_500);
    assert_eq!(a.fines_vnd, 3_000_000);
    assert_eq!(a.conflicts, 2, "{:?}", a.steps);
    assert_eq!(b.status, CaseStatus::Closed as i32);
    assert_eq!(b.seized_value_vnd, 10_000_000);
    assert!(c.known && d.known);

    let requests = assistance(&all);
    let status: Vec<(String, i32)> = requests
        .iter()
        .map(|r| (hex::encode(&r.request_id[..4]), r.status))
        .collect();
    use AssistanceStatus::*;
    let want = [
        ("r1", Answered),
        ("r2", AnsweredLate),
        ("r3", Overdue),
        ("r4", Open),
        ("r5-before", Overdue),
        ("r6-retracted", Overdue),
        ("r7", Overdue),
    ];
    assert_eq!(
        status,
        want.iter()
            .map(|(l, s)| (hex::encode(&id(l)[..4]), *s as i32))
            .collect::<Vec<_>>()
    );
}

#[test]
fn report_counts_what_happened_in_the_period() {
    let all = entries();
    let cases = fold_cases(&all);
    let requests = assistance(&all);
    let report_entries: Vec<ReportEntry<'_>> = all
        .iter()
        .map(|h| ReportEntry {
            id: id(h.label),
            author: h.author,
            created_unix_ms: h.at,
            payload: &h.payload,
            retracted: h.retracted,
        })
        .collect();
    let r = report(FROM, TO, "20", &report_entries, &cases, &requests);

    assert_eq!((r.from_unix_ms, r.to_unix_ms), (FROM, TO));
    assert_eq!(r.computed_by, "20");
    // a6, A's retracted seizure and r6; not r1..r7's answers or anything
    // outside the period.
    assert_eq!(r.retracted, 3);

    let want_provinces = vec![
        figures("01", |f| {
            f.cases_opened = 1; // C; D is opened at the period's end
            f.meetings = 1;
            f.assistance_sent = 1; // r4
            f.assistance_received = 1; // r3
            f.overdue = 1;
        }),
        figures("20", |f| {
            f.alerts = 2;
            f.cases_closed = 1; // A, opened before the period
            f.seized_value_vnd = 1_000_500; // not the retracted 7 000 000
            f.assistance_sent = 2; // r1, r2; r6 retracted
            f.assistance_received = 2; // r4 (open), r7 (answered by 01: overdue)
            f.overdue = 1;
        }),
        figures("22", |f| {
            // Its refused seizure counts nothing; r5 is before the period.
            f.inspection_reports = 1;
        }),
        figures("24", |f| {
            f.alerts = 1; // a6 retracted
            f.cases_opened = 1; // B
            f.seized_value_vnd = 2_000_000; // not A's refused one, not B's late one
            f.fines_vnd = 3_000_000;
            f.assistance_sent = 2; // r3, r7
            f.assistance_received = 2; // r1, r2
            f.answered_in_time = 1;
            f.answered_late = 1;
        }),
    ];
    assert_eq!(r.provinces, want_provinces);

    let want_categories = vec![
        CategoryFigures {
            category: Category::Smuggling as i32,
            alerts: 2,
            cases_opened: 2, // B and C
            cases_closed: 0, // B closes after the period
            seized_value_vnd: 2_000_000,
        },
        CategoryFigures {
            category: Category::Counterfeit as i32,
            alerts: 1,
            cases_opened: 0,
            cases_closed: 1,
            seized_value_vnd: 1_000_500,
        },
    ];
    assert_eq!(r.categories, want_categories);

    let total = r.total.expect("total");
    assert_eq!(
        total,
        ProvinceFigures {
            province: String::new(),
            alerts: 3,
            cases_opened: 2,
            cases_closed: 1,
            assistance_sent: 5,
            assistance_received: 5,
            answered_in_time: 1,
            answered_late: 1,
            overdue: 2,
            seized_value_vnd: 3_000_500,
            fines_vnd: 3_000_000,
            inspection_reports: 1,
            meetings: 1,
        }
    );
}

#[test]
fn an_empty_period_reports_nothing() {
    let all = entries();
    let cases = fold_cases(&all);
    let requests = assistance(&all);
    let report_entries: Vec<ReportEntry<'_>> = all
        .iter()
        .map(|h| ReportEntry {
            id: id(h.label),
            author: h.author,
            created_unix_ms: h.at,
            payload: &h.payload,
            retracted: h.retracted,
        })
        .collect();
    let r = report(50_000, 60_000, "24", &report_entries, &cases, &requests);
    assert!(r.provinces.is_empty() && r.categories.is_empty());
    assert_eq!(r.total, Some(ProvinceFigures::default()));
    assert_eq!(r.retracted, 0);
}
