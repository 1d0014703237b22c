//! A case's state folded from its events (crates/core/src/coordination/case.rs):
//! one table row per rule of the module docs, concurrent writers, the order
//! rule, determinism over every input order, heads, the audience of an
//! event, `check_allowed` agreeing with the fold, and the check of the
//! history a newcomer receives.
//!
//! Events are written as (label, author, created ms, parents by label,
//! event); entry ids are SHA-256 of the label unless a row sets one, and the
//! case id is the id of the row labelled `open` (held or not).

use std::collections::HashMap;

use ed25519_dalek::SigningKey;
use lienthong_core::coordination::case::{
    CaseEntry, check_allowed, circle, event_kind, fold_case, newcomers, verify_history,
};
use lienthong_core::entry::{ENTRY_FORMAT, VerifiedEntry, sign_entry};
use lienthong_core::proto::{
    AdministrativeDecision, Alert, CaseAnswer, CaseClosure, CaseEvent, CaseHandover,
    CaseInvitation, CaseOpened, CaseOutcome, CaseState, CaseStatus, CaseStep, CaseTransfer,
    Category, EntryBody, Goods, InspectionResult, Location, SeizureRecord, TransferTarget,
    case_event::Event, entry_body::Payload,
};
use sha2::{Digest, Sha256};

/// Label of the opening event: its id is the case id.
const OPEN: &str = "open";

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn opened(invite: &[&str]) -> Event {
    Event::Opened(CaseOpened {
        title: "Mỹ phẩm giả qua cửa khẩu Hữu Nghị".into(),
        summary: "Xe tải 12C-123.45 chở mỹ phẩm không rõ nguồn gốc".into(),
        category: Category::Counterfeit as i32,
        invite: strs(invite),
        ..Default::default()
    })
}

fn invitation(provinces: &[&str]) -> Event {
    Event::Invitation(CaseInvitation {
        provinces: strs(provinces),
        message: "Phối hợp xác minh".into(),
    })
}

fn answer(accept: bool) -> CaseAnswer {
    CaseAnswer {
        accept,
        message: String::new(),
    }
}

fn accept_invitation() -> Event {
    Event::InvitationAnswer(answer(true))
}

fn decline_invitation() -> Event {
    Event::InvitationAnswer(answer(false))
}

fn handover(to: &str) -> Event {
    Event::Handover(CaseHandover {
        to: to.into(),
        reason: "Hàng được đưa về kho tại địa bàn".into(),
    })
}

fn accept_handover() -> Event {
    Event::HandoverAnswer(answer(true))
}

fn decline_handover() -> Event {
    Event::HandoverAnswer(answer(false))
}

fn inspection() -> Event {
    Event::InspectionResult(InspectionResult {
        inspected_unix_ms: 1_795_000_000_000,
        location: Some(Location {
            province: "20".into(),
            ..Default::default()
        }),
        findings: "Phát hiện 40 thùng mỹ phẩm không nhãn phụ".into(),
        violation_found: true,
    })
}

fn seizure(values: &[u64]) -> Event {
    Event::Seizure(SeizureRecord {
        record_number: "BB-2025/001".into(),
        seized_unix_ms: 1_795_000_000_000,
        location: Some(Location {
            province: "20".into(),
            ..Default::default()
        }),
        goods: values
            .iter()
            .map(|v| Goods {
                hs_code: "33049990".into(),
                description: "Mỹ phẩm".into(),
                quantity: 10.0,
                unit: "thùng".into(),
                estimated_value_vnd: *v,
            })
            .collect(),
    })
}

fn decision(fine_vnd: u64) -> Event {
    Event::Decision(AdministrativeDecision {
        decision_number: "QĐ-2025/17".into(),
        decided_unix_ms: 1_795_000_000_000,
        violator: None,
        fine_vnd,
        measures: String::new(),
    })
}

fn transfer() -> Event {
    Event::Transfer(CaseTransfer {
        target: TransferTarget::Police as i32,
        agency: "Cơ quan CSĐT Công an tỉnh".into(),
        reason: "Dấu hiệu tội phạm".into(),
    })
}

fn closure() -> Event {
    Event::Closure(CaseClosure {
        outcome: CaseOutcome::Sanctioned as i32,
        summary: "Đã xử phạt".into(),
    })
}

/// The kind `CaseStep::kind` must name, written out independently of
/// `event_kind`.
fn expected_kind(e: &Event) -> &'static str {
    match e {
        Event::Opened(_) => "opened",
        Event::Invitation(_) => "invitation",
        Event::InvitationAnswer(_) => "invitation_answer",
        Event::Handover(_) => "handover",
        Event::HandoverAnswer(_) => "handover_answer",
        Event::InspectionResult(_) => "inspection_result",
        Event::Seizure(_) => "seizure",
        Event::Decision(_) => "decision",
        Event::Transfer(_) => "transfer",
        Event::Closure(_) => "closure",
    }
}

/// One held event, as a row of a scenario.
#[derive(Clone)]
struct Ev {
    label: &'static str,
    author: &'static str,
    at: i64,
    parents: Vec<&'static str>,
    event: Event,
    retracted: bool,
    id: Option<[u8; 32]>,
}

/// An event with its time and parents given.
fn ev(
    label: &'static str,
    author: &'static str,
    at: i64,
    parents: &[&'static str],
    event: Event,
) -> Ev {
    Ev {
        label,
        author,
        at,
        parents: parents.to_vec(),
        event,
        retracted: false,
        id: None,
    }
}

/// An event of a [`chain`]: time and parents are filled in there.
fn s(label: &'static str, author: &'static str, event: Event) -> Ev {
    ev(label, author, 0, &[], event)
}

impl Ev {
    fn retracted(mut self) -> Self {
        self.retracted = true;
        self
    }
    fn with_id(mut self, id: [u8; 32]) -> Self {
        self.id = Some(id);
        self
    }
}

/// Events written one after the other, each seeing the one before (its
/// only head): 100 ms apart from 1000.
fn chain(evs: Vec<Ev>) -> Vec<Ev> {
    let mut prev: Option<&'static str> = None;
    evs.into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e.at = 1_000 + 100 * i as i64;
            e.parents = prev.into_iter().collect();
            prev = Some(e.label);
            e
        })
        .collect()
}

fn default_id(label: &str) -> [u8; 32] {
    Sha256::digest(format!("lienthong case_fold test event {label}")).into()
}

/// Events turned into what the fold takes.
struct Built {
    evs: Vec<Ev>,
    ids: Vec<[u8; 32]>,
    events: Vec<CaseEvent>,
    case_id: [u8; 32],
    by_label: HashMap<&'static str, [u8; 32]>,
}

impl Built {
    fn new(evs: &[Ev]) -> Self {
        let mut by_label = HashMap::new();
        for e in evs {
            let id = e.id.unwrap_or_else(|| default_id(e.label));
            assert!(
                by_label.insert(e.label, id).is_none(),
                "label {} used twice",
                e.label
            );
        }
        let idof = |l: &str| by_label.get(l).copied().unwrap_or_else(|| default_id(l));
        let case_id = idof(OPEN);
        let events = evs
            .iter()
            .map(|e| CaseEvent {
                case_id: if matches!(e.event, Event::Opened(_)) {
                    Vec::new()
                } else {
                    case_id.to_vec()
                },
                parents: e.parents.iter().map(|p| idof(p).to_vec()).collect(),
                reference: e.label.into(),
                history: Vec::new(),
                event: Some(e.event.clone()),
            })
            .collect();
        let ids = evs.iter().map(|e| idof(e.label)).collect();
        Self {
            evs: evs.to_vec(),
            ids,
            events,
            case_id,
            by_label,
        }
    }

    fn entry(&self, i: usize) -> CaseEntry<'_> {
        CaseEntry {
            id: self.ids[i],
            author: self.evs[i].author,
            created_unix_ms: self.evs[i].at,
            event: &self.events[i],
            retracted: self.evs[i].retracted,
        }
    }

    /// The entries at these positions (repeats allowed), in that order.
    fn entries_at(&self, idx: &[usize]) -> Vec<CaseEntry<'_>> {
        idx.iter().map(|&i| self.entry(i)).collect()
    }

    fn entries(&self) -> Vec<CaseEntry<'_>> {
        (0..self.evs.len()).map(|i| self.entry(i)).collect()
    }

    fn fold(&self) -> CaseState {
        fold_case(&self.case_id, &self.entries())
    }

    fn fold_first(&self, n: usize) -> CaseState {
        fold_case(&self.case_id, &self.entries()[..n])
    }

    fn id(&self, label: &str) -> [u8; 32] {
        *self
            .by_label
            .get(label)
            .unwrap_or_else(|| panic!("no event labelled {label}"))
    }

    fn pos(&self, label: &str) -> usize {
        self.evs
            .iter()
            .position(|e| e.label == label)
            .unwrap_or_else(|| panic!("no event labelled {label}"))
    }

    fn label(&self, id: &[u8]) -> &'static str {
        self.evs
            .iter()
            .zip(&self.ids)
            .find(|(_, i)| i[..] == *id)
            .map(|(e, _)| e.label)
            .unwrap_or_else(|| panic!("no event with id {}", hex::encode(id)))
    }

    /// The labels of `state.steps`, in the order the fold applied them.
    fn order(&self, state: &CaseState) -> Vec<&'static str> {
        state
            .steps
            .iter()
            .map(|s| self.label(&s.entry_id))
            .collect()
    }

    fn step<'s>(&self, state: &'s CaseState, label: &str) -> &'s CaseStep {
        let id = self.id(label);
        state
            .steps
            .iter()
            .find(|s| s.entry_id == id)
            .unwrap_or_else(|| panic!("no step {label}"))
    }

    fn sorted_ids(&self, labels: &[&str]) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = labels.iter().map(|l| self.id(l).to_vec()).collect();
        v.sort();
        v
    }
}

// ---------------------------------------------------------------------------
// 1. The table
// ---------------------------------------------------------------------------

/// A step the fold must not apply: (label, substring of its `conflict`,
/// label of the event it conflicts with).
type Refused = (&'static str, &'static str, Option<&'static str>);

#[derive(Clone, Copy)]
struct Expect {
    status: CaseStatus,
    lead: &'static str,
    members: &'static [&'static str],
    invited: &'static [&'static str],
    declined: &'static [&'static str],
    handover_to: &'static str,
    seized_value_vnd: u64,
    fines_vnd: u64,
    /// inspections, seizures, decisions, transfers applied.
    records: [u32; 4],
    refused: &'static [Refused],
}

const OPEN_BY_20: Expect = Expect {
    status: CaseStatus::Open,
    lead: "20",
    members: &[],
    invited: &[],
    declined: &[],
    handover_to: "",
    seized_value_vnd: 0,
    fines_vnd: 0,
    records: [0; 4],
    refused: &[],
};

struct Scenario {
    name: &'static str,
    events: Vec<Ev>,
    /// Each event names the one before as its only parent.
    chain: bool,
    expect: Expect,
}

fn sequential(name: &'static str, events: Vec<Ev>, expect: Expect) -> Scenario {
    Scenario {
        name,
        events: chain(events),
        chain: true,
        expect,
    }
}

fn scenarios() -> Vec<Scenario> {
    vec![
        sequential(
            "opening with invitations: the author leads, the others are invited (never itself)",
            vec![s(OPEN, "20", opened(&["24", "01", "20"]))],
            Expect {
                invited: &["01", "24"],
                ..OPEN_BY_20
            },
        ),
        sequential(
            "invitations and their answers",
            vec![
                s(OPEN, "20", opened(&["24"])),
                s("acc24", "24", accept_invitation()),
                // The lead and a member are skipped, 01 is new: applied.
                s("inv01", "20", invitation(&["01", "24", "20"])),
                s("dec01", "01", decline_invitation()),
                s("dec01-again", "01", accept_invitation()),
                s("stray22", "22", accept_invitation()),
                s("acc24-again", "24", decline_invitation()),
                s("inv-by-member", "24", invitation(&["31"])),
                s("inv-members-only", "20", invitation(&["24", "20"])),
                // A province that declined can be invited again.
                s("reinv01", "20", invitation(&["01"])),
            ],
            Expect {
                members: &["24"],
                invited: &["01"],
                refused: &[
                    ("dec01-again", "01 had no pending invitation", Some("dec01")),
                    ("stray22", "22 had no pending invitation", None),
                    ("acc24-again", "24 had no pending invitation", Some("acc24")),
                    (
                        "inv-by-member",
                        "only the lead (20) may invite; 24 is not the lead",
                        Some(OPEN),
                    ),
                    (
                        "inv-members-only",
                        "every province invited is already a member",
                        Some("acc24"),
                    ),
                ],
                ..OPEN_BY_20
            },
        ),
        sequential(
            "one invitee accepts, one declines",
            vec![
                s(OPEN, "20", opened(&["24", "01"])),
                s("dec24", "24", decline_invitation()),
                s("acc01", "01", accept_invitation()),
            ],
            Expect {
                members: &["01"],
                declined: &["24"],
                ..OPEN_BY_20
            },
        ),
        sequential(
            "handover to a member, accepted: the old lead stays a member",
            vec![
                s(OPEN, "20", opened(&["24"])),
                s("acc24", "24", accept_invitation()),
                s("ho-by-member", "24", handover("01")),
                s("ho24", "20", handover("24")),
                s("ho01-while-pending", "20", handover("01")),
                s("ans-not-asked", "01", accept_handover()),
                s("ho24-acc", "24", accept_handover()),
                s("old-lead-closes", "20", closure()),
                s("old-lead-seizes", "20", seizure(&[3_000_000])),
            ],
            Expect {
                lead: "24",
                members: &["20"],
                seized_value_vnd: 3_000_000,
                records: [0, 1, 0, 0],
                refused: &[
                    (
                        "ho-by-member",
                        "only the lead (20) may hand the case over",
                        Some(OPEN),
                    ),
                    (
                        "ho01-while-pending",
                        "a handover to 24 is already pending",
                        Some("ho24"),
                    ),
                    (
                        "ans-not-asked",
                        "01 was not asked to take the case over",
                        Some("ho24"),
                    ),
                    (
                        "old-lead-closes",
                        "only the lead (24) may close the case",
                        Some("ho24-acc"),
                    ),
                ],
                ..OPEN_BY_20
            },
        ),
        sequential(
            "handover pending: status HANDOVER_PENDING, the target is not yet a member",
            vec![
                s(OPEN, "20", opened(&[])),
                s("ho22", "20", handover("22")),
                s("seize22", "22", seizure(&[1])),
            ],
            Expect {
                status: CaseStatus::HandoverPending,
                handover_to: "22",
                refused: &[(
                    "seize22",
                    "only the lead and member provinces record seizure; 22 is not a member",
                    Some(OPEN),
                )],
                ..OPEN_BY_20
            },
        ),
        sequential(
            "handover declined: nothing changes; answering twice or handing to oneself is refused",
            vec![
                s(OPEN, "20", opened(&[])),
                s("ho22", "20", handover("22")),
                s("ho22-dec", "22", decline_handover()),
                s("ho22-acc-late", "22", accept_handover()),
                s("ho-self", "20", handover("20")),
            ],
            Expect {
                refused: &[
                    (
                        "ho22-acc-late",
                        "22 was not asked to take the case over",
                        // Lost to the answer that ended the handover.
                        Some("ho22-dec"),
                    ),
                    ("ho-self", "the case cannot be handed to its own lead", None),
                ],
                ..OPEN_BY_20
            },
        ),
        sequential(
            "handover to an outsider, accepted; pending invitations survive it",
            vec![
                s(OPEN, "20", opened(&["24"])),
                s("ho22", "20", handover("22")),
                s("ho22-acc", "22", accept_handover()),
                s("inv-by-old-lead", "20", invitation(&["01"])),
                s("acc24", "24", accept_invitation()),
                s("close20", "20", closure()),
                s("close22", "22", closure()),
            ],
            Expect {
                status: CaseStatus::Closed,
                lead: "22",
                members: &["20", "24"],
                refused: &[
                    (
                        "inv-by-old-lead",
                        "only the lead (22) may invite; 20 is not the lead",
                        Some("ho22-acc"),
                    ),
                    (
                        "close20",
                        "only the lead (22) may close the case",
                        Some("ho22-acc"),
                    ),
                ],
                ..OPEN_BY_20
            },
        ),
        sequential(
            "records by the lead and members are summed; others are refused",
            vec![
                s(OPEN, "20", opened(&["24", "01"])),
                s("acc24", "24", accept_invitation()),
                s("insp20", "20", inspection()),
                s("seize20", "20", seizure(&[1_000_000, 250_000])),
                s("seize24", "24", seizure(&[500_000])),
                s("dec24", "24", decision(7_500_000)),
                s("seize01-invited", "01", seizure(&[9_000_000])),
                s("insp01-invited", "01", inspection()),
                s("dec22-outsider", "22", decision(1_000)),
                s("tr22-outsider", "22", transfer()),
                s("tr24", "24", transfer()),
            ],
            Expect {
                status: CaseStatus::Transferred,
                members: &["24"],
                invited: &["01"],
                seized_value_vnd: 1_750_000,
                fines_vnd: 7_500_000,
                records: [1, 2, 1, 1],
                refused: &[
                    (
                        "seize01-invited",
                        "only the lead and member provinces record seizure; 01 is not a member",
                        Some(OPEN),
                    ),
                    (
                        "insp01-invited",
                        "record inspection_result; 01 is not a member",
                        Some(OPEN),
                    ),
                    (
                        "dec22-outsider",
                        "record decision; 22 is not a member",
                        Some(OPEN),
                    ),
                    (
                        "tr22-outsider",
                        "record transfer; 22 is not a member",
                        Some(OPEN),
                    ),
                ],
                ..OPEN_BY_20
            },
        ),
        sequential(
            "closure by the lead only; nothing applies after it",
            vec![
                s(OPEN, "20", opened(&["24", "01"])),
                s("acc24", "24", accept_invitation()),
                s("seize24", "24", seizure(&[2_000_000])),
                s("close-by-member", "24", closure()),
                s("close", "20", closure()),
                s("seize-after", "24", seizure(&[5_000_000])),
                s("dec-after", "20", decision(1_000_000)),
                s("inv-after", "20", invitation(&["22"])),
                s("ans-after", "01", accept_invitation()),
                s("ho-after", "20", handover("24")),
                s("close-again", "20", closure()),
            ],
            Expect {
                status: CaseStatus::Closed,
                members: &["24"],
                // The closure ends the pending invitation to 01.
                seized_value_vnd: 2_000_000,
                records: [0, 1, 0, 0],
                refused: &[
                    (
                        "close-by-member",
                        "only the lead (20) may close the case",
                        Some(OPEN),
                    ),
                    ("seize-after", "the case was already closed", Some("close")),
                    ("dec-after", "the case was already closed", Some("close")),
                    ("inv-after", "the case was already closed", Some("close")),
                    ("ans-after", "the case was already closed", Some("close")),
                    ("ho-after", "the case was already closed", Some("close")),
                    ("close-again", "the case was already closed", Some("close")),
                ],
                ..OPEN_BY_20
            },
        ),
        sequential(
            "closure while a handover is pending: the answer comes too late",
            vec![
                s(OPEN, "20", opened(&[])),
                s("ho24", "20", handover("24")),
                s("close", "20", closure()),
                s("ho24-acc", "24", accept_handover()),
            ],
            Expect {
                status: CaseStatus::Closed,
                // The closure ends the pending handover.
                refused: &[("ho24-acc", "the case was already closed", Some("close"))],
                ..OPEN_BY_20
            },
        ),
        {
            // This node holds events of the case but not its opening: they
            // are listed and none is applied.
            let mut events = chain(vec![
                s("seize24", "24", seizure(&[1_000])),
                s("ho", "20", handover("24")),
                s("inv", "20", invitation(&["01"])),
                s("close", "20", closure()),
            ]);
            events[0].parents = vec![OPEN];
            const NOT_HELD: &str = "the case's opening event is not held here";
            Scenario {
                name: "opening not held: known = false, nothing applied",
                events,
                chain: true,
                expect: Expect {
                    status: CaseStatus::Unspecified,
                    lead: "",
                    refused: &[
                        ("seize24", NOT_HELD, None),
                        ("ho", NOT_HELD, None),
                        ("inv", NOT_HELD, None),
                        ("close", NOT_HELD, None),
                    ],
                    ..OPEN_BY_20
                },
            }
        },
        sequential(
            "retracted events are listed, not applied and not conflicts",
            vec![
                s(OPEN, "20", opened(&[])),
                s("seize-retracted", "20", seizure(&[9_000_000])).retracted(),
                s("seize", "20", seizure(&[1_000])),
                // Would be refused (not a member): retracted says it first.
                s("dec22-retracted", "22", decision(5)).retracted(),
                s("close-retracted", "20", closure()).retracted(),
            ],
            Expect {
                seized_value_vnd: 1_000,
                records: [0, 1, 0, 0],
                ..OPEN_BY_20
            },
        ),
        sequential(
            "a retracted opening: the case is withdrawn, nothing applies",
            vec![
                s(OPEN, "20", opened(&["24"])).retracted(),
                s("acc24", "24", accept_invitation()),
                s("seize20", "20", seizure(&[1_000])),
            ],
            Expect {
                status: CaseStatus::Unspecified,
                lead: "",
                refused: &[
                    ("acc24", "opening event", None),
                    ("seize20", "opening event", None),
                ],
                ..OPEN_BY_20
            },
        ),
        sequential(
            "transferred, then a handover pending",
            vec![
                s(OPEN, "20", opened(&[])),
                s("tr", "20", transfer()),
                s("ho24", "20", handover("24")),
            ],
            Expect {
                status: CaseStatus::HandoverPending,
                handover_to: "24",
                records: [0, 0, 0, 1],
                ..OPEN_BY_20
            },
        ),
        sequential(
            "transferred after a declined handover",
            vec![
                s(OPEN, "20", opened(&[])),
                s("tr", "20", transfer()),
                s("ho24", "20", handover("24")),
                s("ho24-dec", "24", decline_handover()),
            ],
            Expect {
                status: CaseStatus::Transferred,
                records: [0, 0, 0, 1],
                ..OPEN_BY_20
            },
        ),
        // Concurrent rows (also covered step by step further down).
        Scenario {
            name: "concurrent: lead closes, member's later seizure had not seen it",
            events: vec![
                ev(OPEN, "20", 1_000, &[], opened(&["24"])),
                ev("acc24", "24", 1_100, &[OPEN], accept_invitation()),
                ev("close", "20", 1_200, &["acc24"], closure()),
                ev("seize24", "24", 1_250, &["acc24"], seizure(&[4_000_000])),
            ],
            chain: false,
            expect: Expect {
                status: CaseStatus::Closed,
                members: &["24"],
                refused: &[("seize24", "concurrent", Some("close"))],
                ..OPEN_BY_20
            },
        },
        Scenario {
            name: "concurrent: member's seizure created before the close: both applied",
            events: vec![
                ev(OPEN, "20", 1_000, &[], opened(&["24"])),
                ev("acc24", "24", 1_100, &[OPEN], accept_invitation()),
                ev("close", "20", 1_200, &["acc24"], closure()),
                ev("seize24", "24", 1_150, &["acc24"], seizure(&[4_000_000])),
            ],
            chain: false,
            expect: Expect {
                status: CaseStatus::Closed,
                members: &["24"],
                seized_value_vnd: 4_000_000,
                records: [0, 1, 0, 0],
                ..OPEN_BY_20
            },
        },
    ]
}

/// Checks a folded state against its row.
fn check(sc: &Scenario, b: &Built, st: &CaseState) {
    let n = sc.name;
    let x = &sc.expect;
    assert_eq!(CaseStatus::try_from(st.status), Ok(x.status), "{n}: status");
    assert_eq!(st.known, x.status != CaseStatus::Unspecified, "{n}: known");
    assert_eq!(st.case_id, b.case_id.to_vec(), "{n}: case_id");
    assert_eq!(st.lead, x.lead, "{n}: lead");
    assert_eq!(st.members, strs(x.members), "{n}: members");
    assert_eq!(st.invited, strs(x.invited), "{n}: invited");
    assert_eq!(st.declined, strs(x.declined), "{n}: declined");
    assert_eq!(st.handover_to, x.handover_to, "{n}: handover_to");
    assert_eq!(st.seized_value_vnd, x.seized_value_vnd, "{n}: seized");
    assert_eq!(st.fines_vnd, x.fines_vnd, "{n}: fines");
    assert_eq!(
        [
            st.inspections,
            st.seizures,
            st.decisions,
            st.transfers.len() as u32
        ],
        x.records,
        "{n}: inspections, seizures, decisions, transfers"
    );
    assert_eq!(
        st.updated_unix_ms,
        sc.events.iter().map(|e| e.at).max().unwrap_or(0),
        "{n}: updated_unix_ms"
    );
    if st.known {
        let o = &sc.events[b.pos(OPEN)];
        assert_eq!(st.opened_by, o.author, "{n}: opened_by");
        assert_eq!(st.opened_unix_ms, o.at, "{n}: opened_unix_ms");
    }
    if x.status == CaseStatus::Closed {
        assert_ne!(st.closed_unix_ms, 0, "{n}: closed_unix_ms");
        assert_eq!(st.outcome, CaseOutcome::Sanctioned as i32, "{n}: outcome");
    } else {
        assert_eq!(st.closed_unix_ms, 0, "{n}: closed_unix_ms");
    }
    for (label, _, _) in x.refused {
        b.id(label); // a typo in the table fails here
    }
    assert_eq!(st.steps.len(), sc.events.len(), "{n}: one step per event");
    for step in &st.steps {
        let label = b.label(&step.entry_id);
        let e = &sc.events[b.pos(label)];
        assert_eq!(step.author, e.author, "{n}: {label} author");
        assert_eq!(step.created_unix_ms, e.at, "{n}: {label} created");
        assert_eq!(step.kind, expected_kind(&e.event), "{n}: {label} kind");
        assert_eq!(step.retracted, e.retracted, "{n}: {label} retracted");
        if e.retracted {
            assert!(!step.applied, "{n}: retracted {label} applied");
            assert!(
                step.conflict.contains("retracted"),
                "{n}: {label}: {}",
                step.conflict
            );
            assert!(step.conflicts_with.is_empty(), "{n}: {label}");
            continue;
        }
        match x.refused.iter().find(|r| r.0 == label) {
            Some((_, why, with)) => {
                assert!(!step.applied, "{n}: {label} was applied");
                assert!(
                    step.conflict.contains(why),
                    "{n}: {label}: conflict {:?} does not say {why:?}",
                    step.conflict
                );
                let want = with.map(|w| b.id(w).to_vec()).unwrap_or_default();
                assert_eq!(
                    step.conflicts_with, want,
                    "{n}: {label} conflicts_with (want {with:?})"
                );
                if sc.chain {
                    assert!(
                        !step.conflict.contains("concurrent"),
                        "{n}: {label} was written after all it lost to: {}",
                        step.conflict
                    );
                }
            }
            None => {
                assert!(step.applied, "{n}: {label} refused: {}", step.conflict);
                assert!(step.conflict.is_empty(), "{n}: {label}");
                assert!(step.conflicts_with.is_empty(), "{n}: {label}");
            }
        }
    }
    assert_eq!(st.conflicts, x.refused.len() as u32, "{n}: conflicts");
}

#[test]
fn every_rule_of_the_table() {
    for sc in scenarios() {
        let b = Built::new(&sc.events);
        let st = b.fold();
        check(&sc, &b, &st);
        if sc.chain {
            let labels: Vec<_> = sc.events.iter().map(|e| e.label).collect();
            assert_eq!(b.order(&st), labels, "{}: a chain folds in order", sc.name);
        }
    }
}

#[test]
fn the_table_holds_whatever_order_the_events_arrive_in() {
    for sc in scenarios() {
        let b = Built::new(&sc.events);
        let want = b.fold();
        let n = sc.events.len();
        let reversed: Vec<usize> = (0..n).rev().collect();
        let mut rng = Lcg(0x00c0_ffee);
        for round in 0..20 {
            let mut idx: Vec<usize> = if round == 0 {
                reversed.clone()
            } else {
                (0..n).collect()
            };
            if round > 0 {
                shuffle(&mut idx, &mut rng);
            }
            let got = fold_case(&b.case_id, &b.entries_at(&idx));
            assert_eq!(got, want, "{}: input order {idx:?}", sc.name);
        }
    }
}

#[test]
fn a_fold_of_no_events_knows_nothing() {
    let st = fold_case(&[7; 32], &[]);
    assert!(!st.known);
    assert_eq!(st.status, CaseStatus::Unspecified as i32);
    assert!(st.steps.is_empty() && st.heads.is_empty());
    assert_eq!(st.case_id, vec![7; 32]);
}

#[test]
fn an_opening_of_another_case_is_refused() {
    // A held opening whose id is not the case id (e.g. filed under the
    // wrong case) is not applied; the case stays unknown.
    let evs = vec![
        ev("other-open", "24", 1_000, &[], opened(&[])),
        ev("seize", "24", 1_100, &["other-open"], seizure(&[1])),
    ];
    let b = Built::new(&evs);
    let st = b.fold();
    assert!(!st.known);
    let step = b.step(&st, "other-open");
    assert!(!step.applied);
    assert!(
        step.conflict.contains("an opening event of another case"),
        "{}",
        step.conflict
    );
    assert!(!b.step(&st, "seize").applied);
    assert_eq!(st.conflicts, 2);
}

// ---------------------------------------------------------------------------
// 2. Concurrency and the order rule
// ---------------------------------------------------------------------------

/// 20 leads, 24 is a member; both then write with the same parents.
fn close_and_seizure(close_at: i64, seize_at: i64, seizure_saw_close: bool) -> Built {
    let seize_parents: &[&'static str] = if seizure_saw_close {
        &["close"]
    } else {
        &["acc24"]
    };
    Built::new(&[
        ev(OPEN, "20", 1_000, &[], opened(&["24"])),
        ev("acc24", "24", 1_100, &[OPEN], accept_invitation()),
        ev("close", "20", close_at, &["acc24"], closure()),
        ev(
            "seize24",
            "24",
            seize_at,
            seize_parents,
            seizure(&[4_000_000]),
        ),
    ])
}

#[test]
fn concurrent_close_wins_over_a_later_seizure_that_had_not_seen_it() {
    let b = close_and_seizure(1_200, 1_250, false);
    let st = b.fold();
    assert_eq!(b.order(&st), [OPEN, "acc24", "close", "seize24"]);
    assert_eq!(st.status, CaseStatus::Closed as i32);
    assert_eq!(st.seized_value_vnd, 0);
    assert_eq!(st.seizures, 0);
    let close = b.step(&st, "close");
    assert!(close.applied);
    let lost = b.step(&st, "seize24");
    assert!(!lost.applied, "the loser is kept in steps, not applied");
    assert!(!lost.retracted);
    assert_eq!(lost.conflicts_with, b.id("close").to_vec());
    assert!(lost.conflict.starts_with("the case was already closed"));
    assert!(
        lost.conflict.contains(&format!(
            "concurrent: 24 wrote this without having seen entry {}",
            hex::encode(&b.id("close")[..8])
        )),
        "{}",
        lost.conflict
    );
    assert_eq!(st.conflicts, 1);
    assert_eq!(st.heads, b.sorted_ids(&["close", "seize24"]));
}

#[test]
fn a_seizure_written_after_seeing_the_close_is_refused_but_not_concurrent() {
    let b = close_and_seizure(1_200, 1_250, true);
    let st = b.fold();
    let lost = b.step(&st, "seize24");
    assert!(!lost.applied);
    assert_eq!(lost.conflicts_with, b.id("close").to_vec());
    assert_eq!(lost.conflict, "the case was already closed");
    assert_eq!(st.heads, b.sorted_ids(&["seize24"]));
}

#[test]
fn concurrent_seizure_created_before_the_close_is_applied_too() {
    let b = close_and_seizure(1_200, 1_150, false);
    let st = b.fold();
    assert_eq!(b.order(&st), [OPEN, "acc24", "seize24", "close"]);
    assert!(st.steps.iter().all(|s| s.applied && s.conflict.is_empty()));
    assert_eq!(st.status, CaseStatus::Closed as i32);
    assert_eq!(st.seized_value_vnd, 4_000_000);
    assert_eq!(st.conflicts, 0);
}

#[test]
fn equal_creation_times_go_to_the_smaller_entry_id() {
    for (close_id, seize_id, close_first) in
        [([1u8; 32], [2u8; 32], true), ([3; 32], [2; 32], false)]
    {
        let b = Built::new(&[
            ev(OPEN, "20", 1_000, &[], opened(&["24"])),
            ev("acc24", "24", 1_100, &[OPEN], accept_invitation()),
            ev("close", "20", 1_200, &["acc24"], closure()).with_id(close_id),
            ev("seize24", "24", 1_200, &["acc24"], seizure(&[4_000_000])).with_id(seize_id),
        ]);
        let st = b.fold();
        let seized = b.step(&st, "seize24");
        if close_first {
            assert_eq!(b.order(&st), [OPEN, "acc24", "close", "seize24"]);
            assert!(!seized.applied);
            assert!(
                seized.conflict.contains("concurrent"),
                "{}",
                seized.conflict
            );
            assert_eq!(seized.conflicts_with, close_id.to_vec());
            assert_eq!(st.seized_value_vnd, 0);
        } else {
            assert_eq!(b.order(&st), [OPEN, "acc24", "seize24", "close"]);
            assert!(seized.applied);
            assert_eq!(st.seized_value_vnd, 4_000_000);
        }
        assert_eq!(st.status, CaseStatus::Closed as i32);
    }
}

#[test]
fn parents_come_first_whatever_the_clocks_say() {
    // 24's and 01's clocks are behind 20's: their events carry earlier
    // times than the events they answer, yet are applied after them. A
    // parent this node does not hold ("ghost") is ignored.
    let b = Built::new(&[
        ev(OPEN, "20", 1_000, &[], opened(&["24"])),
        ev("acc24", "24", 900, &[OPEN], accept_invitation()),
        ev("inv01", "20", 950, &[OPEN], invitation(&["01"])),
        ev("acc01", "01", 800, &["inv01"], accept_invitation()),
        ev(
            "seize01",
            "01",
            1_300,
            &["acc01", "acc24", "ghost"],
            seizure(&[7]),
        ),
        ev("insp24", "24", 1_200, &["acc24"], inspection()),
    ]);
    let st = b.fold();
    assert_eq!(
        b.order(&st),
        [OPEN, "acc24", "inv01", "acc01", "insp24", "seize01"]
    );
    assert!(st.steps.iter().all(|s| s.applied), "{:?}", st.steps);
    assert_eq!(st.members, ["01", "24"]);
    assert_eq!(st.seized_value_vnd, 7);
    assert_eq!(st.heads, b.sorted_ids(&["insp24", "seize01"]));
}

/// 20 hands the case to 24; 24 accepts while 20, not having seen the
/// acceptance, closes the case.
fn close_during_handover(accept_at: i64, close_at: i64) -> Built {
    Built::new(&[
        ev(OPEN, "20", 1_000, &[], opened(&[])),
        ev("ho24", "20", 1_100, &[OPEN], handover("24")),
        ev("ho24-acc", "24", accept_at, &["ho24"], accept_handover()),
        ev("close20", "20", close_at, &["ho24"], closure()),
    ])
}

#[test]
fn old_lead_closing_concurrently_with_an_accepted_handover() {
    // The acceptance comes first: 20 is no longer the lead.
    let b = close_during_handover(1_200, 1_250);
    let st = b.fold();
    assert_eq!(b.order(&st), [OPEN, "ho24", "ho24-acc", "close20"]);
    assert_eq!(st.lead, "24");
    assert_eq!(st.members, ["20"]);
    assert_eq!(st.status, CaseStatus::Open as i32);
    let lost = b.step(&st, "close20");
    assert!(!lost.applied);
    assert!(
        lost.conflict
            .contains("only the lead (24) may close the case")
    );
    assert!(lost.conflict.contains("concurrent: 20 wrote this"));
    assert_eq!(lost.conflicts_with, b.id("ho24-acc").to_vec());

    // The close comes first: the acceptance is too late.
    let b = close_during_handover(1_300, 1_250);
    let st = b.fold();
    assert_eq!(b.order(&st), [OPEN, "ho24", "close20", "ho24-acc"]);
    assert_eq!(st.lead, "20");
    assert_eq!(st.status, CaseStatus::Closed as i32);
    let lost = b.step(&st, "ho24-acc");
    assert!(!lost.applied);
    assert!(lost.conflict.contains("the case was already closed"));
    assert!(lost.conflict.contains("concurrent: 24 wrote this"));
    assert_eq!(lost.conflicts_with, b.id("close20").to_vec());
}

#[test]
fn a_reinvitation_concurrent_with_the_acceptance_names_it() {
    // 20 invites 24 at the opening; 24 accepts; 20, not having seen the
    // acceptance, invites 24 again.
    let b = Built::new(&[
        ev(OPEN, "20", 1_000, &[], opened(&["24"])),
        ev("acc24", "24", 1_100, &[OPEN], accept_invitation()),
        ev("reinv24", "20", 1_150, &[OPEN], invitation(&["24"])),
    ]);
    let st = b.fold();
    let lost = b.step(&st, "reinv24");
    assert!(!lost.applied);
    assert!(
        lost.conflict
            .contains("every province invited is already a member")
    );
    assert_eq!(lost.conflicts_with, b.id("acc24").to_vec());
    assert!(lost.conflict.contains("concurrent"), "{}", lost.conflict);
}

// ---------------------------------------------------------------------------
// 3. Determinism
// ---------------------------------------------------------------------------

/// Seven events with concurrent branches and one conflict.
fn busy_case() -> Built {
    Built::new(&[
        ev(OPEN, "20", 1_000, &[], opened(&["24", "01"])),
        ev("acc24", "24", 1_100, &[OPEN], accept_invitation()),
        ev("dec01", "01", 1_100, &[OPEN], decline_invitation()),
        ev(
            "seize24",
            "24",
            1_200,
            &["acc24", "dec01"],
            seizure(&[600_000]),
        ),
        ev("ho24", "20", 1_210, &["acc24", "dec01"], handover("24")),
        ev("close20", "20", 1_290, &["seize24", "ho24"], closure()),
        ev("ho24-acc", "24", 1_300, &["ho24"], accept_handover()),
    ])
}

/// Calls `f` with every permutation of 0..n (Heap's algorithm).
fn for_each_permutation(n: usize, mut f: impl FnMut(&[usize])) {
    let mut a: Vec<usize> = (0..n).collect();
    let mut c = vec![0usize; n];
    f(&a);
    let mut i = 0;
    while i < n {
        if c[i] < i {
            if i % 2 == 0 {
                a.swap(0, i);
            } else {
                a.swap(c[i], i);
            }
            f(&a);
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
}

/// A fixed-seed linear congruential generator (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Fisher–Yates.
fn shuffle<T>(v: &mut [T], rng: &mut Lcg) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

#[test]
fn the_busy_case_folds_as_expected() {
    let b = busy_case();
    let st = b.fold();
    // acc24 and dec01 share a creation time: the smaller id goes first.
    let (first, second) = if b.id("acc24") < b.id("dec01") {
        ("acc24", "dec01")
    } else {
        ("dec01", "acc24")
    };
    assert_eq!(
        b.order(&st),
        [
            OPEN, first, second, "seize24", "ho24", "close20", "ho24-acc"
        ]
    );
    assert_eq!(st.status, CaseStatus::Closed as i32);
    assert_eq!(st.lead, "20");
    assert_eq!(st.members, ["24"]);
    assert_eq!(st.declined, ["01"]);
    assert_eq!(st.seized_value_vnd, 600_000);
    let lost = b.step(&st, "ho24-acc");
    assert!(!lost.applied);
    assert!(lost.conflict.contains("concurrent"));
    assert_eq!(lost.conflicts_with, b.id("close20").to_vec());
    assert_eq!(st.conflicts, 1);
}

#[test]
fn every_permutation_of_the_input_folds_the_same_state() {
    let b = busy_case();
    let want = b.fold();
    let mut count = 0;
    for_each_permutation(b.evs.len(), |idx| {
        count += 1;
        let got = fold_case(&b.case_id, &b.entries_at(idx));
        assert_eq!(got, want, "input order {idx:?}");
    });
    assert_eq!(count, 5_040);
}

#[test]
fn shuffled_input_with_duplicates_folds_the_same_state() {
    let b = busy_case();
    let want = b.fold();
    let mut rng = Lcg(20_240_101);
    for _ in 0..300 {
        let mut idx: Vec<usize> = (0..b.evs.len()).collect();
        // Up to three extra copies of random events.
        for _ in 0..rng.below(4) {
            idx.push(rng.below(b.evs.len()));
        }
        shuffle(&mut idx, &mut rng);
        let got = fold_case(&b.case_id, &b.entries_at(&idx));
        assert_eq!(got, want, "input {idx:?}");
    }
    // Every event twice, in a row and interleaved.
    let n = b.evs.len();
    let twice: Vec<usize> = (0..n).flat_map(|i| [i, i]).collect();
    assert_eq!(fold_case(&b.case_id, &b.entries_at(&twice)), want);
    let interleaved: Vec<usize> = (0..n).chain(0..n).collect();
    assert_eq!(fold_case(&b.case_id, &b.entries_at(&interleaved)), want);
}

// ---------------------------------------------------------------------------
// 4. Heads
// ---------------------------------------------------------------------------

#[test]
fn heads_are_the_events_nobody_names_as_parent_sorted() {
    let b = busy_case();
    let st = b.fold();
    assert_eq!(st.heads, b.sorted_ids(&["close20", "ho24-acc"]));
    assert!(st.heads.windows(2).all(|w| w[0] < w[1]));

    // Two concurrent answers to the opening: both heads, sorted.
    let b2 = Built::new(&b.evs[..3]);
    assert_eq!(b2.fold().heads, b2.sorted_ids(&["acc24", "dec01"]));

    // A chain has one head, its last event, refused or retracted or not.
    for sc in scenarios().into_iter().filter(|s| s.chain) {
        let b = Built::new(&sc.events);
        let last = sc.events.last().map(|e| e.label).unwrap_or(OPEN);
        assert_eq!(b.fold().heads, b.sorted_ids(&[last]), "{}", sc.name);
    }

    // An event named only by a refused event is not a head.
    let b3 = close_and_seizure(1_200, 1_250, true);
    assert_eq!(b3.fold().heads, b3.sorted_ids(&["seize24"]));
}

#[test]
fn heads_are_what_the_next_event_names() {
    // Folding what a node holds, then writing with parents = heads, makes
    // the new event the only head.
    let b = busy_case();
    let st = b.fold();
    let parents: Vec<&'static str> = st.heads.iter().map(|h| b.label(h)).collect();
    let mut evs = b.evs.clone();
    evs.push(ev("next", "20", 1_400, &parents, inspection()));
    let b2 = Built::new(&evs);
    assert_eq!(b2.fold().heads, b2.sorted_ids(&["next"]));
}

// ---------------------------------------------------------------------------
// 5. Audience
// ---------------------------------------------------------------------------

fn case_event(e: Event) -> CaseEvent {
    CaseEvent {
        case_id: vec![1; 32],
        event: Some(e),
        ..Default::default()
    }
}

#[test]
fn circle_and_newcomers() {
    // 20 leads, 24 is a member, 01 is invited.
    let b = Built::new(&chain(vec![
        s(OPEN, "20", opened(&["24", "01"])),
        s("acc24", "24", accept_invitation()),
    ]));
    let st = b.fold();
    assert_eq!(st.invited, ["01"]);

    // An opening reaches and brings in those it invites.
    let empty = CaseState::default();
    let open = case_event(opened(&["24", "01"]));
    assert_eq!(newcomers(&empty, &open), ["24", "01"]);
    assert_eq!(circle(&empty, &open, "20"), ["01", "24"]);

    // An invitation reaches the invitee, not the author; only provinces
    // not already in the circle are newcomers.
    let inv = case_event(invitation(&["22", "24", "01"]));
    assert_eq!(newcomers(&st, &inv), ["22"]);
    assert_eq!(circle(&st, &inv, "20"), ["01", "22", "24"]);

    // A record by a member reaches the lead and the others, not its author.
    let rec = case_event(seizure(&[1]));
    assert!(newcomers(&st, &rec).is_empty());
    assert_eq!(circle(&st, &rec, "24"), ["01", "20"]);
    assert_eq!(circle(&st, &rec, "20"), ["01", "24"]);

    // A handover to an outsider brings it in; to a member, nobody.
    let out = case_event(handover("22"));
    assert_eq!(newcomers(&st, &out), ["22"]);
    assert_eq!(circle(&st, &out, "20"), ["01", "22", "24"]);
    let inside = case_event(handover("24"));
    assert!(newcomers(&st, &inside).is_empty());
    assert_eq!(circle(&st, &inside, "20"), ["01", "24"]);
    // Nor to a province invited and not yet answered.
    assert!(newcomers(&st, &case_event(handover("01"))).is_empty());

    // While a handover to 22 is pending, 22 hears of every event.
    let b = Built::new(&chain(vec![
        s(OPEN, "20", opened(&["24"])),
        s("acc24", "24", accept_invitation()),
        s("ho22", "20", handover("22")),
    ]));
    let st = b.fold();
    assert_eq!(circle(&st, &rec, "24"), ["20", "22"]);
    // Its answer goes to the lead and the members.
    let ans = case_event(accept_handover());
    assert!(newcomers(&st, &ans).is_empty());
    assert_eq!(circle(&st, &ans, "22"), ["20", "24"]);

    // A province that declined is out of the circle: re-inviting it makes
    // it a newcomer again (it needs the history).
    let b = Built::new(&chain(vec![
        s(OPEN, "20", opened(&["24"])),
        s("dec24", "24", decline_invitation()),
    ]));
    let st = b.fold();
    assert!(circle(&st, &rec, "20").is_empty());
    assert_eq!(newcomers(&st, &case_event(invitation(&["24"]))), ["24"]);
}

// ---------------------------------------------------------------------------
// 6. check_allowed agrees with the fold
// ---------------------------------------------------------------------------

#[test]
fn check_allowed_agrees_with_the_fold_step_by_step() {
    let mut checked = 0;
    for sc in scenarios().into_iter().filter(|s| s.chain) {
        let b = Built::new(&sc.events);
        let full = b.fold();
        for k in 0..sc.events.len() {
            let before = b.fold_first(k);
            // The fold of a prefix is the prefix of the fold.
            assert_eq!(before.steps[..], full.steps[..k], "{}: prefix {k}", sc.name);
            let e = &sc.events[k];
            if e.retracted {
                continue;
            }
            let allowed = check_allowed(&before, &b.events[k], e.author);
            assert_eq!(
                allowed.is_ok(),
                full.steps[k].applied,
                "{}: step {} ({}): check_allowed says {allowed:?}, the fold says {:?}",
                sc.name,
                e.label,
                event_kind(&b.events[k]),
                full.steps[k].conflict
            );
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} steps checked");
}

#[test]
fn check_allowed_refuses_an_empty_event_and_a_case_not_held() {
    let b = Built::new(&chain(vec![s(OPEN, "20", opened(&[]))]));
    let st = b.fold();
    let empty = CaseEvent {
        case_id: b.case_id.to_vec(),
        ..Default::default()
    };
    assert_eq!(
        check_allowed(&st, &empty, "20"),
        Err("the event is empty".into())
    );
    let unknown = CaseState::default();
    let err = check_allowed(&unknown, &case_event(seizure(&[1])), "20").unwrap_err();
    assert!(err.contains("no opening event"), "{err}");
    // An opening is always allowed: it is a new case.
    assert!(check_allowed(&unknown, &case_event(opened(&[])), "20").is_ok());
}

// ---------------------------------------------------------------------------
// 7. verify_history
// ---------------------------------------------------------------------------

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The members' keys at manifest version 1: 20 and 24 (01 has none).
fn keys_v1(author: &str, manifest_version: u64) -> Option<ed25519_dalek::VerifyingKey> {
    match (author, manifest_version) {
        ("20", 1) => Some(key(20).verifying_key()),
        ("24", 1) => Some(key(24).verifying_key()),
        _ => None,
    }
}

fn signed(author: &str, signer: &SigningKey, index: u64, at: i64, e: CaseEvent) -> VerifiedEntry {
    sign_entry(
        EntryBody {
            format: ENTRY_FORMAT,
            author: author.into(),
            index,
            created_unix_ms: at,
            audience: strs(&["01", "20", "24"]),
            manifest_version: 1,
            agreement_hash: vec![9; 32],
            payload: Some(Payload::CaseEvent(e)),
            ..Default::default()
        },
        signer,
    )
}

/// A real case: 20 opens inviting 24, 24 accepts and records a seizure;
/// then 20 invites 01, carrying the history. Also a second case, opened by
/// 24, with one event.
struct SignedCase {
    open: VerifiedEntry,
    acc: VerifiedEntry,
    seize: VerifiedEntry,
    carrier_id: [u8; 32],
    carrier: CaseEvent,
    other_open: VerifiedEntry,
    other_seize: VerifiedEntry,
}

fn signed_case() -> SignedCase {
    let open = signed(
        "20",
        &key(20),
        0,
        1_000,
        CaseEvent {
            reference: "open".into(),
            event: Some(opened(&["24"])),
            ..Default::default()
        },
    );
    let case_id = open.id().0.to_vec();
    let step = |author: &str, index: u64, at: i64, parent: &VerifiedEntry, e: Event| {
        let seed = if author == "20" { 20 } else { 24 };
        signed(
            author,
            &key(seed),
            index,
            at,
            CaseEvent {
                case_id: case_id.clone(),
                parents: vec![parent.id().0.to_vec()],
                reference: format!("{author}-{index}"),
                event: Some(e),
                ..Default::default()
            },
        )
    };
    let acc = step("24", 0, 1_100, &open, accept_invitation());
    let seize = step("24", 1, 1_200, &acc, seizure(&[5_000_000]));
    let carrier = CaseEvent {
        case_id: case_id.clone(),
        parents: vec![seize.id().0.to_vec()],
        reference: "inv01".into(),
        history: vec![
            open.envelope().to_vec(),
            acc.envelope().to_vec(),
            seize.envelope().to_vec(),
        ],
        event: Some(invitation(&["01"])),
    };
    let carrier_id = signed("20", &key(20), 1, 1_300, carrier.clone()).id().0;
    let other_open = signed(
        "24",
        &key(24),
        2,
        1_250,
        CaseEvent {
            reference: "other".into(),
            event: Some(opened(&[])),
            ..Default::default()
        },
    );
    let other_seize = signed(
        "24",
        &key(24),
        3,
        1_260,
        CaseEvent {
            case_id: other_open.id().0.to_vec(),
            parents: vec![other_open.id().0.to_vec()],
            reference: "other-seize".into(),
            event: Some(seizure(&[1])),
            ..Default::default()
        },
    );
    SignedCase {
        open,
        acc,
        seize,
        carrier_id,
        carrier,
        other_open,
        other_seize,
    }
}

#[test]
fn a_history_of_the_same_case_verifies() {
    let c = signed_case();
    assert_eq!(verify_history(&c.carrier_id, &c.carrier, keys_v1), Ok(()));
    // No history at all is fine too.
    let mut bare = c.carrier.clone();
    bare.history.clear();
    assert_eq!(verify_history(&c.carrier_id, &bare, keys_v1), Ok(()));
    // What the newcomer folds from it is what the others fold.
    let decoded: Vec<(VerifiedEntry, CaseEvent)> = c
        .carrier
        .history
        .iter()
        .map(|env| {
            let author = lienthong_core::entry::decode_envelope(env)
                .unwrap()
                .1
                .author;
            let v =
                lienthong_core::entry::verify_envelope(env, &author, &keys_v1(&author, 1).unwrap())
                    .unwrap();
            let Some(Payload::CaseEvent(e)) = v.body().payload.clone() else {
                panic!("not a case event")
            };
            (v, e)
        })
        .collect();
    let entries: Vec<CaseEntry<'_>> = decoded
        .iter()
        .map(|(v, e)| CaseEntry {
            id: v.id().0,
            author: v.author(),
            created_unix_ms: v.body().created_unix_ms,
            event: e,
            retracted: false,
        })
        .collect();
    let st = fold_case(&c.open.id().0, &entries);
    assert_eq!(st.lead, "20");
    assert_eq!(st.members, ["24"]);
    assert_eq!(st.seized_value_vnd, 5_000_000);
    assert_eq!(st.heads, vec![c.seize.id().0.to_vec()]);
    assert!(check_allowed(&st, &c.carrier, "20").is_ok());
}

#[test]
fn a_bad_history_is_refused_naming_the_envelope() {
    let c = signed_case();
    let good = |i: usize| c.carrier.history[i].clone();

    // Flip one byte inside the signed body (in the seizure's record number).
    let mut tampered_body = c.seize.envelope().to_vec();
    let at = tampered_body
        .windows(b"BB-2025/001".len())
        .position(|w| w == b"BB-2025/001")
        .expect("record number in the envelope");
    tampered_body[at + 3] ^= 0x01;
    // Flip the signature's last byte.
    let mut tampered_sig = c.acc.envelope().to_vec();
    *tampered_sig.last_mut().unwrap() ^= 0x80;
    // 24's body signed with 20's key.
    let forged = signed(
        "24",
        &key(20),
        0,
        1_100,
        CaseEvent {
            case_id: c.open.id().0.to_vec(),
            parents: vec![c.open.id().0.to_vec()],
            event: Some(accept_invitation()),
            ..Default::default()
        },
    );
    // An entry by a member whose key is unknown.
    let by_01 = signed(
        "01",
        &key(1),
        0,
        1_150,
        CaseEvent {
            case_id: c.open.id().0.to_vec(),
            event: Some(accept_invitation()),
            ..Default::default()
        },
    );
    let alert = sign_entry(
        EntryBody {
            format: ENTRY_FORMAT,
            author: "20".into(),
            index: 5,
            created_unix_ms: 1_000,
            audience: strs(&["20"]),
            manifest_version: 1,
            payload: Some(Payload::Alert(Alert {
                reference: "a1".into(),
                title: "Hàng giả".into(),
                ..Default::default()
            })),
            ..Default::default()
        },
        &key(20),
    );

    type KeyOf = fn(&str, u64) -> Option<ed25519_dalek::VerifyingKey>;
    fn wrong_key_for_24(author: &str, v: u64) -> Option<ed25519_dalek::VerifyingKey> {
        match author {
            "24" => Some(key(42).verifying_key()),
            _ => keys_v1(author, v),
        }
    }
    /// What is wrong, the history, the keys, what the error must say.
    type Row = (&'static str, Vec<Vec<u8>>, KeyOf, &'static [&'static str]);
    let rows: Vec<Row> = vec![
        (
            "a byte of a body changed",
            vec![good(0), good(1), tampered_body],
            keys_v1,
            &["history[2]: ", "signature does not verify", "\"24\""],
        ),
        (
            "a signature changed",
            vec![good(0), tampered_sig, good(2)],
            keys_v1,
            &["history[1]: ", "signature does not verify"],
        ),
        (
            "verified under the wrong key",
            vec![good(0), good(1), good(2)],
            wrong_key_for_24,
            &["history[1]: ", "signature does not verify"],
        ),
        (
            "signed by another member than its author",
            vec![good(0), forged.envelope().to_vec()],
            keys_v1,
            &["history[1]: ", "signature does not verify", "\"24\""],
        ),
        (
            "no key for its author",
            vec![good(0), good(1), by_01.envelope().to_vec()],
            keys_v1,
            &["history[2]: no key for member \"01\" at manifest version 1"],
        ),
        (
            "an event of another case",
            vec![good(0), c.other_seize.envelope().to_vec(), good(1)],
            keys_v1,
            &["history[1]: an event of another case"],
        ),
        (
            "the opening of another case",
            vec![good(0), good(1), good(2), c.other_open.envelope().to_vec()],
            keys_v1,
            &["history[3]: an event of another case"],
        ),
        (
            "not a case event",
            vec![alert.envelope().to_vec(), good(0)],
            keys_v1,
            &["history[0]: not a case event"],
        ),
        (
            "not an envelope",
            vec![good(0), vec![0xff, 0xff, 0xff]],
            keys_v1,
            &["history[1]: malformed"],
        ),
    ];
    for (name, history, key_of, want) in rows {
        let mut e = c.carrier.clone();
        e.history = history;
        let err =
            verify_history(&c.carrier_id, &e, key_of).expect_err(&format!("{name}: accepted"));
        for w in want {
            assert!(err.contains(w), "{name}: {err:?} does not say {w:?}");
        }
    }
    // The same envelopes verify as history of the other case.
    let mut e = c.carrier.clone();
    e.case_id = c.other_open.id().0.to_vec();
    e.history = vec![
        c.other_open.envelope().to_vec(),
        c.other_seize.envelope().to_vec(),
    ];
    assert_eq!(verify_history(&c.carrier_id, &e, keys_v1), Ok(()));
}

#[test]
fn the_history_of_an_opening_is_checked_against_its_own_id() {
    // An opening has no case_id: the case is the event's own id, so an
    // envelope of any existing case is foreign to it.
    let c = signed_case();
    let mut opening = CaseEvent {
        event: Some(opened(&["01"])),
        history: vec![c.open.envelope().to_vec()],
        ..Default::default()
    };
    let err = verify_history(&[5; 32], &opening, keys_v1).unwrap_err();
    assert_eq!(err, "history[0]: an event of another case");
    opening.history.clear();
    assert_eq!(verify_history(&[5; 32], &opening, keys_v1), Ok(()));
    // With its own id, its own envelope is of the same case.
    opening.history = vec![c.open.envelope().to_vec()];
    assert_eq!(verify_history(&c.open.id().0, &opening, keys_v1), Ok(()));
}
