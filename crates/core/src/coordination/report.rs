//! Periodic statistics (`lienthong report`), computed from the entries a
//! node holds and the states folded from them.
//!
//! What counts where:
//! - alerts, meetings and inspection reports: by their author, when
//!   created in the period;
//! - cases opened: by the opening province and the case's category, when
//!   the opening is in the period; cases closed: by the lead that closed it,
//!   when the applied closure is in the period;
//! - value seized and fines: applied seizure records and decisions created
//!   in the period, by their author (a refused or retracted one counts
//!   nothing);
//! - assistance: requests created in the period, as sent by the asking
//!   province and received by the province asked, whose answer status
//!   (in time, late, overdue) is counted for the province asked.
//!
//! Retracted entries count nothing; how many there were is reported.

use std::collections::{BTreeMap, BTreeSet};

use lienthong_proto::v1::{
    AssistanceState, AssistanceStatus, CaseState, CategoryFigures, ProvinceFigures, ReportResponse,
    case_event, entry_body::Payload, inspection_event,
};

/// One held entry created in the period.
#[derive(Debug, Clone, Copy)]
pub struct ReportEntry<'a> {
    /// Entry id.
    pub id: [u8; 32],
    /// Author.
    pub author: &'a str,
    /// Creation time.
    pub created_unix_ms: i64,
    /// What it says.
    pub payload: &'a Payload,
    /// True if its author retracted it.
    pub retracted: bool,
}

/// Computes the report for `[from, to)`. `cases` are the folded states of
/// the cases with an event in the period; `requests` the states of the
/// requests created in it.
pub fn report(
    from_unix_ms: i64,
    to_unix_ms: i64,
    computed_by: &str,
    entries: &[ReportEntry<'_>],
    cases: &[CaseState],
    requests: &[AssistanceState],
) -> ReportResponse {
    let within = |t: i64| t >= from_unix_ms && t < to_unix_ms;
    let mut prov: BTreeMap<String, ProvinceFigures> = BTreeMap::new();
    let mut cat: BTreeMap<i32, CategoryFigures> = BTreeMap::new();
    fn p<'m>(
        prov: &'m mut BTreeMap<String, ProvinceFigures>,
        code: &str,
    ) -> &'m mut ProvinceFigures {
        prov.entry(code.to_owned())
            .or_insert_with(|| ProvinceFigures {
                province: code.to_owned(),
                ..Default::default()
            })
    }
    let applied: BTreeSet<&[u8]> = cases
        .iter()
        .flat_map(|c| {
            c.steps
                .iter()
                .filter(|s| s.applied)
                .map(|s| s.entry_id.as_slice())
        })
        .collect();
    let case_category: BTreeMap<&[u8], i32> = cases
        .iter()
        .filter(|c| c.known)
        .map(|c| (c.case_id.as_slice(), c.category))
        .collect();
    let mut retracted = 0u32;
    let mut cat_add = |c: i32, f: &mut dyn FnMut(&mut CategoryFigures)| {
        f(cat.entry(c).or_insert_with(|| CategoryFigures {
            category: c,
            ..Default::default()
        }))
    };
    for e in entries.iter().filter(|e| within(e.created_unix_ms)) {
        if e.retracted {
            retracted += 1;
            continue;
        }
        match e.payload {
            Payload::Alert(a) => {
                p(&mut prov, e.author).alerts += 1;
                cat_add(a.category, &mut |c| c.alerts += 1);
            }
            Payload::Meeting(_) => p(&mut prov, e.author).meetings += 1,
            Payload::Inspection(i) => {
                if matches!(i.event, Some(inspection_event::Event::Report(_))) {
                    p(&mut prov, e.author).inspection_reports += 1;
                }
            }
            Payload::CaseEvent(ev) if applied.contains(&e.id[..]) => {
                let case_id: &[u8] = if ev.case_id.is_empty() {
                    &e.id
                } else {
                    &ev.case_id
                };
                let category = case_category.get(case_id).copied().unwrap_or(0);
                match &ev.event {
                    Some(case_event::Event::Opened(_)) => {
                        p(&mut prov, e.author).cases_opened += 1;
                        cat_add(category, &mut |c| c.cases_opened += 1);
                    }
                    Some(case_event::Event::Closure(_)) => {
                        p(&mut prov, e.author).cases_closed += 1;
                        cat_add(category, &mut |c| c.cases_closed += 1);
                    }
                    Some(case_event::Event::Seizure(s)) => {
                        let v = super::goods_value_vnd(&s.goods);
                        let f = p(&mut prov, e.author);
                        f.seized_value_vnd = f.seized_value_vnd.saturating_add(v);
                        cat_add(category, &mut |c| {
                            c.seized_value_vnd = c.seized_value_vnd.saturating_add(v)
                        });
                    }
                    Some(case_event::Event::Decision(d)) => {
                        let f = p(&mut prov, e.author);
                        f.fines_vnd = f.fines_vnd.saturating_add(d.fine_vnd);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    for r in requests
        .iter()
        .filter(|r| within(r.requested_unix_ms) && !r.retracted)
    {
        let Some(req) = &r.request else { continue };
        p(&mut prov, &r.from).assistance_sent += 1;
        let to = p(&mut prov, &req.to);
        to.assistance_received += 1;
        match AssistanceStatus::try_from(r.status) {
            Ok(AssistanceStatus::Answered) => to.answered_in_time += 1,
            Ok(AssistanceStatus::AnsweredLate) => to.answered_late += 1,
            Ok(AssistanceStatus::Overdue) => to.overdue += 1,
            _ => {}
        }
    }
    let mut total = ProvinceFigures::default();
    for f in prov.values() {
        total.alerts += f.alerts;
        total.cases_opened += f.cases_opened;
        total.cases_closed += f.cases_closed;
        total.assistance_sent += f.assistance_sent;
        total.assistance_received += f.assistance_received;
        total.answered_in_time += f.answered_in_time;
        total.answered_late += f.answered_late;
        total.overdue += f.overdue;
        total.seized_value_vnd = total.seized_value_vnd.saturating_add(f.seized_value_vnd);
        total.fines_vnd = total.fines_vnd.saturating_add(f.fines_vnd);
        total.inspection_reports += f.inspection_reports;
        total.meetings += f.meetings;
    }
    ReportResponse {
        from_unix_ms,
        to_unix_ms,
        computed_by: computed_by.to_owned(),
        provinces: prov.into_values().collect(),
        categories: cat.into_values().collect(),
        total: Some(total),
        retracted,
    }
}
