//! A coordinated inspection's state, folded from its plan, acceptances and
//! reports.
//!
//! The participants are the planning province and the provinces the plan
//! names. Each named province answers once (the first answer by creation
//! time, then entry id, counts); the planning province and the provinces
//! that accepted report. Anything else is listed in `refused`, never
//! silently dropped.

use std::collections::BTreeMap;

use lienthong_proto::v1::{
    InspectionEvent, InspectionParticipant, InspectionState, inspection_event::Event,
};

/// One held event of a plan.
#[derive(Debug, Clone, Copy)]
pub struct InspectionEntry<'a> {
    /// Entry id.
    pub id: [u8; 32],
    /// Author member code.
    pub author: &'a str,
    /// Creation time.
    pub created_unix_ms: i64,
    /// The event.
    pub event: &'a InspectionEvent,
    /// True if the author retracted it.
    pub retracted: bool,
}

/// Folds a plan's events (any order) into its state.
pub fn fold_inspection(plan_id: &[u8; 32], events: &[InspectionEntry<'_>]) -> InspectionState {
    let mut events: Vec<&InspectionEntry<'_>> = events.iter().filter(|e| !e.retracted).collect();
    events.sort_by_key(|e| (e.created_unix_ms, e.id));
    events.dedup_by_key(|e| e.id);
    let mut s = InspectionState {
        plan_id: plan_id.to_vec(),
        ..Default::default()
    };
    let short = |id: &[u8; 32]| hex::encode(&id[..8]);
    let plan = events.iter().find_map(|e| match &e.event.event {
        Some(Event::Plan(p)) if e.id == *plan_id && e.event.plan_id.is_empty() => Some((e, p)),
        _ => None,
    });
    let Some((planner, plan)) = plan else {
        s.refused = events
            .iter()
            .map(|e| format!("{}: this node does not hold the plan", short(&e.id)))
            .collect();
        return s;
    };
    s.known = true;
    s.planned_by = planner.author.to_owned();
    s.plan = Some(plan.clone());
    let mut parts: BTreeMap<&str, InspectionParticipant> = BTreeMap::new();
    for p in std::iter::once(planner.author).chain(plan.provinces.iter().map(String::as_str)) {
        parts.entry(p).or_insert_with(|| InspectionParticipant {
            province: p.to_owned(),
            answered: p == planner.author,
            accepted: p == planner.author,
            reports: Vec::new(),
        });
    }
    for e in &events {
        if e.id == *plan_id {
            continue;
        }
        let who = e.author;
        let Some(part) = parts.get_mut(who) else {
            s.refused
                .push(format!("{}: {who} is not in the plan", short(&e.id)));
            continue;
        };
        match &e.event.event {
            Some(Event::Acceptance(a)) => {
                if part.answered {
                    s.refused
                        .push(format!("{}: {who} had already answered", short(&e.id)));
                } else {
                    part.answered = true;
                    part.accepted = a.accept;
                }
            }
            Some(Event::Report(r)) => {
                if !part.accepted {
                    s.refused.push(format!(
                        "{}: {who} reported without having accepted the plan",
                        short(&e.id)
                    ));
                } else {
                    s.inspected = s.inspected.saturating_add(r.inspected);
                    s.violations = s.violations.saturating_add(r.violations);
                    s.fines_vnd = s.fines_vnd.saturating_add(r.fines_vnd);
                    s.seized_value_vnd = s.seized_value_vnd.saturating_add(r.seized_value_vnd);
                    part.reports.push(r.clone());
                }
            }
            Some(Event::Plan(_)) => s.refused.push(format!(
                "{}: a second plan under this plan's id",
                short(&e.id)
            )),
            None => s.refused.push(format!("{}: empty event", short(&e.id))),
        }
    }
    // The planner first, then the others by code.
    let planner_part = parts.remove(planner.author);
    s.participants = planner_part
        .into_iter()
        .chain(parts.into_values())
        .collect();
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use lienthong_proto::v1::{CaseAnswer, InspectionPlan, InspectionReport};

    fn ev(plan_id: &[u8], e: Event) -> InspectionEvent {
        InspectionEvent {
            plan_id: plan_id.to_vec(),
            reference: "r".into(),
            event: Some(e),
        }
    }

    #[test]
    fn acceptances_reports_and_refusals() {
        let pid = [1u8; 32];
        let plan = ev(
            &[],
            Event::Plan(InspectionPlan {
                title: "Kiểm tra liên ngành".into(),
                provinces: vec!["24".into(), "01".into()],
                ..Default::default()
            }),
        );
        let yes = ev(
            &pid,
            Event::Acceptance(CaseAnswer {
                accept: true,
                message: String::new(),
            }),
        );
        let no = ev(
            &pid,
            Event::Acceptance(CaseAnswer {
                accept: false,
                message: String::new(),
            }),
        );
        let rep = ev(
            &pid,
            Event::Report(InspectionReport {
                findings: "ok".into(),
                inspected: 5,
                violations: 2,
                fines_vnd: 10,
                seized_value_vnd: 100,
                case_ids: vec![],
            }),
        );
        let e = |id: u8, author, at, event| InspectionEntry {
            id: if id == 1 { pid } else { [id; 32] },
            author,
            created_unix_ms: at,
            event,
            retracted: false,
        };
        let events = [
            e(9, "01", 9, &rep), // 01 declined first: refused
            e(3, "24", 3, &yes),
            e(1, "20", 1, &plan),
            e(4, "01", 4, &no),
            e(5, "24", 5, &no), // second answer: refused
            e(6, "24", 6, &rep),
            e(7, "20", 7, &rep),
            e(8, "33", 8, &rep), // not in the plan: refused
        ];
        let s = fold_inspection(&pid, &events);
        assert!(s.known);
        assert_eq!(s.planned_by, "20");
        let order: Vec<_> = s.participants.iter().map(|p| p.province.as_str()).collect();
        assert_eq!(order, ["20", "01", "24"]);
        assert_eq!(
            (s.inspected, s.violations, s.fines_vnd, s.seized_value_vnd),
            (10, 4, 20, 200)
        );
        assert_eq!(s.refused.len(), 3, "{:?}", s.refused);
        let p01 = &s.participants[1];
        assert!(p01.answered && !p01.accepted);
        // Without the plan nothing is applied.
        let s = fold_inspection(&pid, &events[..1]);
        assert!(!s.known);
        assert_eq!(s.refused.len(), 1);
    }
}
