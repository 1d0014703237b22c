//! Where an assistance request stands, from the request, the answers and
//! escalations held, and the time.
//!
//! Only the province asked can answer; the first answer (by creation time,
//! then entry id) counts and decides whether it came in time. Without an
//! answer, a request is overdue once its deadline has passed.

use lienthong_proto::v1::{AssistanceAnswer, AssistanceRequest, AssistanceState, AssistanceStatus};

/// A held assistance request.
#[derive(Debug, Clone, Copy)]
pub struct RequestEntry<'a> {
    /// Entry id.
    pub id: [u8; 32],
    /// Who asked.
    pub author: &'a str,
    /// Creation time of the request entry.
    pub created_unix_ms: i64,
    /// The request as signed.
    pub request: &'a AssistanceRequest,
    /// True if its author retracted it.
    pub retracted: bool,
}

/// A held answer.
#[derive(Debug, Clone, Copy)]
pub struct AnswerEntry<'a> {
    /// Entry id.
    pub id: [u8; 32],
    /// Who answered.
    pub author: &'a str,
    /// Creation time of the answer entry.
    pub created_unix_ms: i64,
    /// The answer as signed.
    pub answer: &'a AssistanceAnswer,
    /// True if its author retracted it.
    pub retracted: bool,
}

/// The request's state at `now_unix_ms`. `escalations` are the ids of
/// Escalation entries naming it.
pub fn assistance_state(
    request: RequestEntry<'_>,
    answers: &[AnswerEntry<'_>],
    escalations: &[[u8; 32]],
    now_unix_ms: i64,
) -> AssistanceState {
    let first = answers
        .iter()
        .filter(|a| {
            !a.retracted && a.author == request.request.to && a.answer.request_id == request.id
        })
        .min_by_key(|a| (a.created_unix_ms, a.id));
    let due = request.request.due_unix_ms;
    let status = match first {
        Some(a) if a.created_unix_ms <= due => AssistanceStatus::Answered,
        Some(_) => AssistanceStatus::AnsweredLate,
        None if now_unix_ms > due => AssistanceStatus::Overdue,
        None => AssistanceStatus::Open,
    };
    AssistanceState {
        request_id: request.id.to_vec(),
        from: request.author.to_owned(),
        request: Some(request.request.clone()),
        requested_unix_ms: request.created_unix_ms,
        status: status as i32,
        answer_id: first.map(|a| a.id.to_vec()).unwrap_or_default(),
        answer: first.map(|a| a.answer.clone()),
        answered_unix_ms: first.map_or(0, |a| a.created_unix_ms),
        escalation_ids: escalations.iter().map(|e| e.to_vec()).collect(),
        retracted: request.retracted,
    }
}

/// Whether the requesting node should write an Escalation now: overdue,
/// not retracted, and none written yet.
pub fn needs_escalation(state: &AssistanceState) -> bool {
    state.status == AssistanceStatus::Overdue as i32
        && !state.retracted
        && state.escalation_ids.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(due: i64) -> AssistanceRequest {
        AssistanceRequest {
            reference: "r".into(),
            to: "24".into(),
            due_unix_ms: due,
            ..Default::default()
        }
    }

    #[test]
    fn status_table() {
        let r = req(1_000);
        let request = RequestEntry {
            id: [1; 32],
            author: "20",
            created_unix_ms: 0,
            request: &r,
            retracted: false,
        };
        let ans = AssistanceAnswer {
            request_id: vec![1; 32],
            ..Default::default()
        };
        let other = AssistanceAnswer {
            request_id: vec![9; 32],
            ..Default::default()
        };
        let a = |author, at, answer| AnswerEntry {
            id: [at as u8; 32],
            author,
            created_unix_ms: at,
            answer,
            retracted: false,
        };
        use AssistanceStatus::*;
        let cases: Vec<(Vec<AnswerEntry<'_>>, i64, AssistanceStatus)> = vec![
            (vec![], 500, Open),
            (vec![], 1_000, Open),
            (vec![], 1_001, Overdue),
            (vec![a("24", 900, &ans)], 5_000, Answered),
            (vec![a("24", 1_000, &ans)], 5_000, Answered),
            (vec![a("24", 1_200, &ans)], 5_000, AnsweredLate),
            // Only the province asked can answer.
            (vec![a("01", 900, &ans)], 5_000, Overdue),
            // An answer to another request does not count.
            (vec![a("24", 900, &other)], 5_000, Overdue),
            // The first answer decides.
            (
                vec![a("24", 1_500, &ans), a("24", 800, &ans)],
                5_000,
                Answered,
            ),
        ];
        for (answers, now, want) in cases {
            let s = assistance_state(request, &answers, &[], now);
            assert_eq!(s.status, want as i32, "{answers:?} at {now}");
        }
        let mut retracted = a("24", 900, &ans);
        retracted.retracted = true;
        let s = assistance_state(request, &[retracted], &[], 5_000);
        assert_eq!(s.status, Overdue as i32);
        assert!(needs_escalation(&s));
        let s = assistance_state(request, &[], &[[7; 32]], 5_000);
        assert!(!needs_escalation(&s));
    }
}
