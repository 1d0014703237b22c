//! A case's state, folded from its signed events.
//!
//! ```text
//! events (any order, any node) ──order──▶ parents first, then (created, id)
//!                              ──apply──▶ CaseState { lead, members, status, sums, steps }
//! ```
//!
//! # Order
//!
//! Each event names as `parents` the case's heads its author held. Events
//! are applied parents first; among events whose held parents are all
//! applied, the earliest `created_unix_ms` goes first, then the smallest
//! entry id. Parents this node does not hold are ignored, so the order
//! depends only on the set of events held: two nodes holding the same
//! events fold the same state.
//!
//! # Rules
//!
//! | event | who may write it | effect |
//! |---|---|---|
//! | opened | anyone (it is the case) | author becomes lead; `invite` pending |
//! | invitation | lead | provinces not yet members become invited |
//! | invitation_answer | an invited province | member, or declined |
//! | handover | lead, none pending | `to` asked to take the lead |
//! | handover_answer | the province asked | accept: it leads, old lead stays member |
//! | inspection_result, seizure, decision, transfer | lead or member | recorded, summed |
//! | closure | lead | closed; nothing applies after it |
//!
//! An event the state does not allow is **not applied, and not dropped**:
//! it stays in `steps` with `applied = false`, the rule it broke and the
//! applied event it lost to (`conflicts_with`), noting when its author had
//! not seen that event, i.e. the two were concurrent. A retracted event is
//! listed and not applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lienthong_proto::v1::{
    CaseEvent, CaseOutcome, CaseState, CaseStatus, CaseStep, Subject, case_event::Event,
};

/// One held event of a case, with what the fold needs from its entry.
#[derive(Debug, Clone, Copy)]
pub struct CaseEntry<'a> {
    /// Entry id.
    pub id: [u8; 32],
    /// Author member code.
    pub author: &'a str,
    /// Creation time in the entry.
    pub created_unix_ms: i64,
    /// The event.
    pub event: &'a CaseEvent,
    /// True if the author retracted it.
    pub retracted: bool,
}

/// The event's kind as named in [`CaseStep::kind`].
pub fn event_kind(e: &CaseEvent) -> &'static str {
    match &e.event {
        Some(Event::Opened(_)) => "opened",
        Some(Event::Invitation(_)) => "invitation",
        Some(Event::InvitationAnswer(_)) => "invitation_answer",
        Some(Event::Handover(_)) => "handover",
        Some(Event::HandoverAnswer(_)) => "handover_answer",
        Some(Event::InspectionResult(_)) => "inspection_result",
        Some(Event::Seizure(_)) => "seizure",
        Some(Event::Decision(_)) => "decision",
        Some(Event::Transfer(_)) => "transfer",
        Some(Event::Closure(_)) => "closure",
        None => "empty",
    }
}

/// The order events are applied in (indexes into `events`).
fn order(events: &[CaseEntry<'_>]) -> Vec<usize> {
    let pos: HashMap<[u8; 32], usize> = events.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
    let mut waiting = vec![0usize; events.len()];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); events.len()];
    for (i, e) in events.iter().enumerate() {
        let held: BTreeSet<usize> = e
            .event
            .parents
            .iter()
            .filter_map(|p| <[u8; 32]>::try_from(p.as_slice()).ok())
            .filter_map(|p| pos.get(&p).copied())
            .filter(|&p| p != i)
            .collect();
        waiting[i] = held.len();
        for p in held {
            children[p].push(i);
        }
    }
    let key = |i: usize| (events[i].created_unix_ms, events[i].id, i);
    let mut ready: BTreeSet<(i64, [u8; 32], usize)> = (0..events.len())
        .filter(|&i| waiting[i] == 0)
        .map(key)
        .collect();
    let mut out = Vec::with_capacity(events.len());
    while let Some(k) = ready.pop_first() {
        let i = k.2;
        out.push(i);
        for &c in &children[i] {
            waiting[c] -= 1;
            if waiting[c] == 0 {
                ready.insert(key(c));
            }
        }
    }
    // A cycle would need a hash collision; apply whatever is left in the
    // tie-break order rather than lose it.
    if out.len() < events.len() {
        let mut rest: Vec<_> = (0..events.len())
            .filter(|i| waiting[*i] > 0)
            .map(key)
            .collect();
        rest.sort();
        out.extend(rest.into_iter().map(|k| k.2));
    }
    out
}

/// Ancestors of each event among the held ones (by index).
fn ancestors(events: &[CaseEntry<'_>], order: &[usize]) -> Vec<BTreeSet<usize>> {
    let pos: HashMap<[u8; 32], usize> = events.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
    let mut anc: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); events.len()];
    for &i in order {
        let mut mine = BTreeSet::new();
        for p in &events[i].event.parents {
            if let Some(&p) = <[u8; 32]>::try_from(p.as_slice())
                .ok()
                .and_then(|p| pos.get(&p))
                && p != i
            {
                mine.insert(p);
                mine.extend(anc[p].iter().copied());
            }
        }
        anc[i] = mine;
    }
    anc
}

/// What the fold tracks besides the public state.
#[derive(Default)]
struct Tracker {
    /// Event that last made the current lead (opening or accepted handover).
    lead_by: Option<usize>,
    /// The closure, once applied.
    closed_by: Option<usize>,
    /// The pending handover.
    handover_by: Option<usize>,
    /// Last answer per province (to an invitation).
    answered_by: BTreeMap<String, usize>,
    /// The last answer to a handover.
    handover_answered_by: Option<usize>,
}

/// Folds a case's events into its state. `events` may be in any order and
/// may hold duplicates (the first of each id counts).
pub fn fold_case(case_id: &[u8; 32], events: &[CaseEntry<'_>]) -> CaseState {
    let mut seen = BTreeSet::new();
    let events: Vec<CaseEntry<'_>> = events
        .iter()
        .filter(|e| seen.insert(e.id))
        .copied()
        .collect();
    let order = order(&events);
    let anc = ancestors(&events, &order);

    let mut s = CaseState {
        case_id: case_id.to_vec(),
        ..Default::default()
    };
    let mut t = Tracker::default();
    let mut members: BTreeSet<String> = BTreeSet::new();
    let mut invited: BTreeSet<String> = BTreeSet::new();
    let mut declined: BTreeSet<String> = BTreeSet::new();
    let mut subjects: Vec<Subject> = Vec::new();
    let mut transferred = false;

    for &i in &order {
        let e = &events[i];
        let mut step = CaseStep {
            entry_id: e.id.to_vec(),
            author: e.author.to_owned(),
            created_unix_ms: e.created_unix_ms,
            kind: event_kind(e.event).to_owned(),
            applied: false,
            conflict: String::new(),
            conflicts_with: Vec::new(),
            retracted: e.retracted,
        };
        s.updated_unix_ms = s.updated_unix_ms.max(e.created_unix_ms);
        // Refuses the step, naming the applied event it lost to.
        let refuse = |step: &mut CaseStep, why: String, culprit: Option<usize>| {
            step.conflict = why;
            if let Some(c) = culprit {
                step.conflicts_with = events[c].id.to_vec();
                if !anc[i].contains(&c) {
                    step.conflict.push_str(&format!(
                        " (concurrent: {} wrote this without having seen entry {})",
                        e.author,
                        hex::encode(&events[c].id[..8])
                    ));
                }
            }
        };
        if e.retracted {
            step.conflict = "retracted by its author".into();
            s.steps.push(step);
            continue;
        }
        let is_lead = s.lead == e.author;
        let is_member = is_lead || members.contains(e.author);
        let opened = s.known;
        match &e.event.event {
            Some(Event::Opened(o)) => {
                if e.id != *case_id || !e.event.case_id.is_empty() {
                    refuse(&mut step, "an opening event of another case".into(), None);
                } else {
                    s.known = true;
                    s.opened_by = e.author.to_owned();
                    s.opened_unix_ms = e.created_unix_ms;
                    s.title = o.title.clone();
                    s.summary = o.summary.clone();
                    s.category = o.category;
                    s.lead = e.author.to_owned();
                    s.alert_ids = o.alert_ids.clone();
                    invited.extend(o.invite.iter().filter(|p| **p != e.author).cloned());
                    subjects.extend(o.subjects.iter().cloned());
                    t.lead_by = Some(i);
                    step.applied = true;
                }
            }
            _ if !opened => refuse(
                &mut step,
                "the case's opening event is not held here, or was retracted".into(),
                None,
            ),
            _ if t.closed_by.is_some() => {
                refuse(&mut step, "the case was already closed".into(), t.closed_by)
            }
            Some(Event::Invitation(inv)) => {
                if !is_lead {
                    refuse(
                        &mut step,
                        format!(
                            "only the lead ({}) may invite; {} is not the lead",
                            s.lead, e.author
                        ),
                        t.lead_by,
                    );
                } else {
                    let new: Vec<&String> = inv
                        .provinces
                        .iter()
                        .filter(|p| **p != s.lead && !members.contains(*p))
                        .collect();
                    if new.is_empty() {
                        // Lost to the acceptance that made them members.
                        let culprit = inv
                            .provinces
                            .iter()
                            .find_map(|p| t.answered_by.get(p).copied());
                        refuse(
                            &mut step,
                            "every province invited is already a member".into(),
                            culprit,
                        );
                    } else {
                        for p in new {
                            declined.remove(p);
                            invited.insert(p.clone());
                        }
                        step.applied = true;
                    }
                }
            }
            Some(Event::InvitationAnswer(a)) => {
                if !invited.contains(e.author) {
                    let culprit = t.answered_by.get(e.author).copied();
                    refuse(
                        &mut step,
                        format!("{} had no pending invitation to answer", e.author),
                        culprit,
                    );
                } else {
                    invited.remove(e.author);
                    if a.accept {
                        members.insert(e.author.to_owned());
                    } else {
                        declined.insert(e.author.to_owned());
                    }
                    t.answered_by.insert(e.author.to_owned(), i);
                    step.applied = true;
                }
            }
            Some(Event::Handover(h)) => {
                if !is_lead {
                    refuse(
                        &mut step,
                        format!("only the lead ({}) may hand the case over", s.lead),
                        t.lead_by,
                    );
                } else if let Some(p) = t.handover_by {
                    refuse(
                        &mut step,
                        format!("a handover to {} is already pending", s.handover_to),
                        Some(p),
                    );
                } else if h.to == s.lead {
                    refuse(
                        &mut step,
                        "the case cannot be handed to its own lead".into(),
                        None,
                    );
                } else {
                    s.handover_to = h.to.clone();
                    t.handover_by = Some(i);
                    step.applied = true;
                }
            }
            Some(Event::HandoverAnswer(a)) => {
                if s.handover_to != e.author {
                    refuse(
                        &mut step,
                        format!("{} was not asked to take the case over", e.author),
                        t.handover_by.or(t.handover_answered_by).or(t.lead_by),
                    );
                } else {
                    if a.accept {
                        let old = std::mem::replace(&mut s.lead, e.author.to_owned());
                        members.insert(old);
                        members.remove(e.author);
                        invited.remove(e.author);
                        declined.remove(e.author);
                        t.lead_by = Some(i);
                    }
                    s.handover_to.clear();
                    t.handover_by = None;
                    t.handover_answered_by = Some(i);
                    step.applied = true;
                }
            }
            Some(
                ev @ (Event::InspectionResult(_)
                | Event::Seizure(_)
                | Event::Decision(_)
                | Event::Transfer(_)),
            ) => {
                if !is_member {
                    refuse(
                        &mut step,
                        format!(
                            "only the lead and member provinces record {}; {} is not a member",
                            event_kind(e.event),
                            e.author
                        ),
                        t.lead_by,
                    );
                } else {
                    match ev {
                        Event::InspectionResult(_) => s.inspections += 1,
                        Event::Seizure(r) => {
                            s.seizures += 1;
                            let v = super::goods_value_vnd(&r.goods);
                            s.seized_value_vnd = s.seized_value_vnd.saturating_add(v);
                        }
                        Event::Decision(d) => {
                            s.decisions += 1;
                            s.fines_vnd = s.fines_vnd.saturating_add(d.fine_vnd);
                            subjects.extend(d.violator.iter().cloned());
                        }
                        Event::Transfer(tr) => {
                            transferred = true;
                            s.transfers.push(tr.clone());
                        }
                        _ => {}
                    }
                    step.applied = true;
                }
            }
            Some(Event::Closure(c)) => {
                if !is_lead {
                    refuse(
                        &mut step,
                        format!("only the lead ({}) may close the case", s.lead),
                        t.lead_by,
                    );
                } else {
                    s.outcome = c.outcome;
                    s.closed_unix_ms = e.created_unix_ms;
                    t.closed_by = Some(i);
                    // A pending handover or invitation ends with the case.
                    s.handover_to.clear();
                    t.handover_by = None;
                    invited.clear();
                    step.applied = true;
                }
            }
            None => refuse(&mut step, "the event is empty".into(), None),
        }
        s.steps.push(step);
    }

    s.members = members.into_iter().collect();
    s.invited = invited.into_iter().collect();
    s.declined = declined.into_iter().collect();
    let mut seen_subjects = Vec::new();
    for sub in subjects {
        if !seen_subjects.contains(&sub) {
            seen_subjects.push(sub);
        }
    }
    s.subjects = seen_subjects;
    s.status = if !s.known {
        CaseStatus::Unspecified
    } else if t.closed_by.is_some() {
        CaseStatus::Closed
    } else if !s.handover_to.is_empty() {
        CaseStatus::HandoverPending
    } else if transferred {
        CaseStatus::Transferred
    } else {
        CaseStatus::Open
    } as i32;
    if s.outcome == 0 && t.closed_by.is_some() {
        s.outcome = CaseOutcome::Other as i32;
    }
    s.conflicts = s
        .steps
        .iter()
        .filter(|st| !st.applied && !st.retracted)
        .count() as u32;
    let named: BTreeSet<&[u8]> = events
        .iter()
        .flat_map(|e| e.event.parents.iter().map(Vec::as_slice))
        .collect();
    let mut heads: Vec<Vec<u8>> = events
        .iter()
        .filter(|e| !named.contains(&e.id[..]))
        .map(|e| e.id.to_vec())
        .collect();
    heads.sort();
    s.heads = heads;
    s
}

/// The provinces an event of the case goes to, as the author's node sees
/// the case: the lead, members, pending invitees and handover target, plus
/// whoever the event itself invites or hands over to. Sorted, unique,
/// without the author (who is always in the audience).
pub fn circle(state: &CaseState, event: &CaseEvent, author: &str) -> Vec<String> {
    let mut c: BTreeSet<&str> = BTreeSet::new();
    if !state.lead.is_empty() {
        c.insert(&state.lead);
    }
    c.extend(state.members.iter().map(String::as_str));
    c.extend(state.invited.iter().map(String::as_str));
    if !state.handover_to.is_empty() {
        c.insert(&state.handover_to);
    }
    c.extend(newcomers(state, event));
    c.remove(author);
    c.into_iter().map(str::to_owned).collect()
}

/// Provinces the event brings into the case that were not in its circle
/// before (they need the case's history to fold it).
pub fn newcomers<'a>(state: &CaseState, event: &'a CaseEvent) -> Vec<&'a str> {
    let in_circle = |p: &str| {
        state.lead == p
            || state.members.iter().any(|m| m == p)
            || state.invited.iter().any(|m| m == p)
            || state.handover_to == p
    };
    match &event.event {
        Some(Event::Opened(o)) => o
            .invite
            .iter()
            .map(String::as_str)
            .filter(|p| !in_circle(p))
            .collect(),
        Some(Event::Invitation(i)) => i
            .provinces
            .iter()
            .map(String::as_str)
            .filter(|p| !in_circle(p))
            .collect(),
        Some(Event::Handover(h)) if !in_circle(&h.to) => vec![h.to.as_str()],
        _ => Vec::new(),
    }
}

/// Checks that `author` may write `event` on `state` now (the same rules
/// the fold applies), so a node refuses a step before signing it rather
/// than recording a conflict of its own making.
pub fn check_allowed(state: &CaseState, event: &CaseEvent, author: &str) -> Result<(), String> {
    let is_lead = state.lead == author;
    let is_member = is_lead || state.members.iter().any(|m| m == author);
    if matches!(event.event, Some(Event::Opened(_))) {
        return Ok(());
    }
    if !state.known {
        return Err("this node holds no such case (no opening event)".into());
    }
    if state.status == CaseStatus::Closed as i32 {
        return Err("the case is closed".into());
    }
    match &event.event {
        Some(Event::Invitation(i)) => {
            if !is_lead {
                return Err(format!("only the lead ({}) may invite", state.lead));
            }
            if i.provinces
                .iter()
                .all(|p| *p == state.lead || state.members.contains(p))
            {
                return Err("every province invited is already a member".into());
            }
        }
        Some(Event::InvitationAnswer(_)) => {
            if !state.invited.iter().any(|p| p == author) {
                return Err(format!("{author} has no pending invitation to this case"));
            }
        }
        Some(Event::Handover(h)) => {
            if !is_lead {
                return Err(format!(
                    "only the lead ({}) may hand the case over",
                    state.lead
                ));
            }
            if !state.handover_to.is_empty() {
                return Err(format!(
                    "a handover to {} is pending; wait for its answer",
                    state.handover_to
                ));
            }
            if h.to == author {
                return Err("the case cannot be handed to its own lead".into());
            }
        }
        Some(Event::HandoverAnswer(_)) => {
            if state.handover_to != author {
                return Err(format!("{author} was not asked to take this case over"));
            }
        }
        Some(Event::Closure(_)) => {
            if !is_lead {
                return Err(format!("only the lead ({}) may close the case", state.lead));
            }
        }
        Some(_) => {
            if !is_member {
                return Err(format!(
                    "only the lead and member provinces record {}; {author} is not a member (accept an invitation first)",
                    event_kind(event)
                ));
            }
        }
        None => return Err("the event is empty".into()),
    }
    Ok(())
}

/// Checks the history a case event carries for a newcomer: each envelope
/// must be an event of the same case, signed by its author with the key
/// `key_of(author, manifest_version)` gives. A receiver runs this before it
/// stores the event, so history it folds later is as trustworthy as what
/// it received directly.
pub fn verify_history(
    event_id: &[u8; 32],
    event: &CaseEvent,
    key_of: impl Fn(&str, u64) -> Option<ed25519_dalek::VerifyingKey>,
) -> Result<(), String> {
    let case_id: Vec<u8> = if event.case_id.is_empty() {
        event_id.to_vec()
    } else {
        event.case_id.clone()
    };
    for (i, env) in event.history.iter().enumerate() {
        let (_, body) =
            crate::entry::decode_envelope(env).map_err(|e| format!("history[{i}]: {e}"))?;
        let key = key_of(&body.author, body.manifest_version).ok_or_else(|| {
            format!(
                "history[{i}]: no key for member {:?} at manifest version {}",
                body.author, body.manifest_version
            )
        })?;
        let v = crate::entry::verify_envelope(env, &body.author, &key)
            .map_err(|e| format!("history[{i}]: {e}"))?;
        let Some(lienthong_proto::v1::entry_body::Payload::CaseEvent(h)) = &v.body().payload else {
            return Err(format!("history[{i}]: not a case event"));
        };
        let own: Vec<u8> = if h.case_id.is_empty() {
            v.id().0.to_vec()
        } else {
            h.case_id.clone()
        };
        if own != case_id {
            return Err(format!("history[{i}]: an event of another case"));
        }
    }
    Ok(())
}
