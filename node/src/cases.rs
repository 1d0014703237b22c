//! `lienthong.v1.Cases` and the retraction half of `Alerts`: coordination
//! entries written, shared with whoever takes part, and folded into state.
//!
//! ```text
//! request ──validate (core)──▶ state as this node folds it ──allowed?──▶
//!   audience = who takes part ──▶ writer (signed, durable) ──▶ new state
//! ```
//!
//! Every state is folded on demand from the entries of its thread (see
//! `lienthong_core::terms::thread_of`) by the pure functions of
//! `lienthong_core::coordination`; nothing derived is stored, so nodes
//! holding the same entries answer the same.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use lienthong_core::coordination::{assistance, case, inspection, report, validate};
use lienthong_core::entry::{EntryId, decode_envelope};
use lienthong_core::proto::{
    self as pb, case_event::Event, cases_server::Cases, entry_body::Payload, inspection_event,
};
use lienthong_core::terms::{Term, query_words};
use lienthong_store::{Appended, NewEntry, Query, Store, StoredEntry, Writer};
use tokio::sync::Semaphore;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api::now_unix_ms;
use crate::status::ApiError;

/// Most entries of one thread folded (a case with more is refused rather
/// than folded partially).
const MAX_THREAD: usize = 20_000;
/// Candidates examined by one list call.
const MAX_SCAN: usize = 20_000;

/// What every coordination write and read needs.
#[derive(Clone)]
pub struct Coordination {
    pub store: Store,
    pub writer: Arc<Writer>,
    pub in_flight: Arc<Semaphore>,
    pub peering: Option<Arc<crate::peer::Peering>>,
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Wakes the escalation task when this node writes a request (whose
    /// deadline may come before the one it waits for).
    pub new_request: Arc<tokio::sync::Notify>,
    /// Held through a retraction, and through a correction from its
    /// checks to its retraction: two of them on one entry cannot both pass
    /// the checks.
    pub retracting: Arc<tokio::sync::Mutex<()>>,
}

/// The wire answer for an entry written here.
pub fn written(a: &Appended, author: &str) -> pb::WrittenEntry {
    pb::WrittenEntry {
        entry_id: a.id.0.to_vec(),
        index: a.index,
        duplicate: a.duplicate,
        created_unix_ms: a.created_unix_ms,
        author: author.to_owned(),
        cursor: a.cursor,
    }
}

fn id32(field: &str, b: &[u8]) -> Result<[u8; 32], ApiError> {
    b.try_into()
        .map_err(|_| ApiError::field(field, format!("{} bytes: an entry id is 32 bytes", b.len())))
}

fn short(id: &[u8]) -> String {
    hex::encode(&id[..id.len().min(8)])
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("task: {e}")))?
        .map_err(Status::from)
}

impl Coordination {
    fn me(&self) -> &str {
        self.store.member()
    }

    /// Manifest version and agreement hash in force (0 and empty without a
    /// federation).
    fn signed_context(&self) -> (u64, Vec<u8>) {
        match &self.peering {
            None => (0, Vec::new()),
            Some(p) => {
                let chain = p.chain();
                let m = chain.current();
                (
                    m.version(),
                    lienthong_core::agreement::agreement_hash(&m.manifest().agreement).to_vec(),
                )
            }
        }
    }

    /// Every code must be a current member (other than this node) when
    /// the node is federated.
    fn check_members<'a>(
        &self,
        field: &str,
        codes: impl IntoIterator<Item = &'a String>,
    ) -> Result<(), ApiError> {
        let members = match &self.peering {
            None => Vec::new(),
            Some(p) => p.chain().current().member_codes(),
        };
        let mut problems = Vec::new();
        for (i, c) in codes.into_iter().enumerate() {
            if c == self.me() {
                problems.push(lienthong_core::alert::FieldError {
                    field: format!("{field}[{i}]"),
                    problem: format!("{c} is this node's own province"),
                });
            } else if !members.iter().any(|m| m == c) {
                problems.push(lienthong_core::alert::FieldError {
                    field: format!("{field}[{i}]"),
                    problem: format!(
                        "{c} is not a member of the federation in force (manifest members: {})",
                        if members.is_empty() {
                            "none".into()
                        } else {
                            members.join(", ")
                        }
                    ),
                });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(lienthong_core::alert::InvalidInput(
                problems,
            )))
        }
    }

    /// Signs and appends one coordination entry.
    async fn append(
        &self,
        payload: Payload,
        audience: Vec<String>,
        reference: String,
        deadline_hours: u32,
    ) -> Result<Appended, Status> {
        let (manifest_version, agreement_hash) = self.signed_context();
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        Ok(self
            .writer
            .append(NewEntry {
                payload,
                audience,
                manifest_version,
                agreement_hash,
                reference: Some(reference),
                handling: 0,
                response_deadline_hours: deadline_hours,
                openings: pb::OpeningSet::default(),
            })
            .await
            .map_err(ApiError::from)?)
    }
}

/// Every stored entry of a thread, oldest first.
pub fn thread(store: &Store, id: &[u8]) -> Result<Vec<StoredEntry>, ApiError> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = store.query(&Query {
            groups: vec![vec![Term::thread(id)]],
            before_cursor: before,
            limit: 1000,
            max_scan: 1000,
            include_retracted: true,
            ..Default::default()
        })?;
        out.extend(page.entries);
        if out.len() > MAX_THREAD {
            return Err(ApiError::Precondition(format!(
                "{} has more than {MAX_THREAD} entries; this node does not fold it",
                short(id)
            )));
        }
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    out.reverse();
    Ok(out)
}

/// A case's events as held here: stored ones and those embedded as
/// history in stored ones (checked when received), each with its envelope.
struct CaseEvents {
    items: Vec<HeldEvent>,
    /// Stored entries in the case's thread.
    stored: usize,
}

/// (id, author, created, event, retracted, envelope)
type HeldEvent = ([u8; 32], String, i64, pb::CaseEvent, bool, Vec<u8>);

impl CaseEvents {
    fn load(store: &Store, case_id: &[u8; 32]) -> Result<Self, ApiError> {
        let mut items = Vec::new();
        let mut seen = BTreeSet::new();
        let entries = thread(store, case_id)?;
        for e in &entries {
            let Some(Payload::CaseEvent(ev)) = &e.body.payload else {
                continue;
            };
            if seen.insert(e.id.0) {
                items.push((
                    e.id.0,
                    e.body.author.clone(),
                    e.body.created_unix_ms,
                    ev.clone(),
                    e.retracted_by.is_some(),
                    e.envelope.clone(),
                ));
            }
        }
        // History brought along for newcomers: verified on receipt.
        for e in &entries {
            let Some(Payload::CaseEvent(ev)) = &e.body.payload else {
                continue;
            };
            for env in &ev.history {
                let id = EntryId::of_envelope(env);
                if seen.contains(&id.0) {
                    continue;
                }
                let Ok((_, body)) = decode_envelope(env) else {
                    continue;
                };
                if let Some(Payload::CaseEvent(h)) = body.payload {
                    let own = if h.case_id.is_empty() {
                        id.0.to_vec()
                    } else {
                        h.case_id.clone()
                    };
                    if own == case_id[..] && seen.insert(id.0) {
                        items.push((
                            id.0,
                            body.author,
                            body.created_unix_ms,
                            h,
                            false,
                            env.clone(),
                        ));
                    }
                }
            }
        }
        Ok(Self {
            items,
            stored: entries.len(),
        })
    }

    fn fold(&self, case_id: &[u8; 32]) -> pb::CaseState {
        let entries: Vec<case::CaseEntry<'_>> = self
            .items
            .iter()
            .map(|(id, author, created, ev, retracted, _)| case::CaseEntry {
                id: *id,
                author,
                created_unix_ms: *created,
                event: ev,
                retracted: *retracted,
            })
            .collect();
        case::fold_case(case_id, &entries)
    }
}

/// A case's state as this node folds it.
pub fn case_state(store: &Store, case_id: &[u8; 32]) -> Result<(pb::CaseState, usize), ApiError> {
    let ev = CaseEvents::load(store, case_id)?;
    Ok((ev.fold(case_id), ev.items.len()))
}

/// An assistance request's state at `now`.
pub fn assistance_state(
    store: &Store,
    req: &StoredEntry,
    now: i64,
) -> Result<Option<pb::AssistanceState>, ApiError> {
    let Some(Payload::AssistanceRequest(r)) = &req.body.payload else {
        return Ok(None);
    };
    let entries = thread(store, &req.id.0)?;
    let answers: Vec<(StoredEntry, pb::AssistanceAnswer)> = entries
        .iter()
        .filter_map(|e| match &e.body.payload {
            Some(Payload::AssistanceAnswer(a)) => Some((e.clone(), a.clone())),
            _ => None,
        })
        .collect();
    let ans: Vec<assistance::AnswerEntry<'_>> = answers
        .iter()
        .map(|(e, a)| assistance::AnswerEntry {
            id: e.id.0,
            author: &e.body.author,
            created_unix_ms: e.body.created_unix_ms,
            answer: a,
            retracted: e.retracted_by.is_some(),
        })
        .collect();
    let escalations: Vec<[u8; 32]> = entries
        .iter()
        .filter(|e| matches!(e.body.payload, Some(Payload::Escalation(_))))
        .map(|e| e.id.0)
        .collect();
    Ok(Some(assistance::assistance_state(
        assistance::RequestEntry {
            id: req.id.0,
            author: &req.body.author,
            created_unix_ms: req.body.created_unix_ms,
            request: r,
            retracted: req.retracted_by.is_some(),
        },
        &ans,
        &escalations,
        now,
    )))
}

/// A plan's state.
pub fn inspection_state(
    store: &Store,
    plan_id: &[u8; 32],
) -> Result<(pb::InspectionState, usize), ApiError> {
    let entries = thread(store, plan_id)?;
    let evs: Vec<(&StoredEntry, &pb::InspectionEvent)> = entries
        .iter()
        .filter_map(|e| match &e.body.payload {
            Some(Payload::Inspection(i)) => Some((e, i)),
            _ => None,
        })
        .collect();
    let items: Vec<inspection::InspectionEntry<'_>> = evs
        .iter()
        .map(|(e, i)| inspection::InspectionEntry {
            id: e.id.0,
            author: &e.body.author,
            created_unix_ms: e.body.created_unix_ms,
            event: i,
            retracted: e.retracted_by.is_some(),
        })
        .collect();
    Ok((inspection::fold_inspection(plan_id, &items), items.len()))
}

/// The Cases service.
pub struct CasesService {
    pub c: Coordination,
}

type CaseStream = Pin<Box<dyn Stream<Item = Result<pb::CaseState, Status>> + Send>>;

#[tonic::async_trait]
impl Cases for CasesService {
    async fn record_case_event(
        &self,
        req: Request<pb::CaseEvent>,
    ) -> Result<Response<pb::CaseEventResponse>, Status> {
        let ev = validate::validate_case_event(Some(req.get_ref()), now_unix_ms())
            .map_err(ApiError::from)?;
        let c = &self.c;
        let me = c.me().to_owned();
        let reference = format!("case {}", ev.reference);
        // A repeated reference answers with the entry written then.
        if let Some(e) = c
            .store
            .get_by_reference(&reference)
            .map_err(ApiError::from)?
        {
            let case_id = case_of(&e);
            let st = c.store.clone();
            let (state, _) = blocking(move || case_state(&st, &case_id)).await?;
            return Ok(Response::new(pb::CaseEventResponse {
                written: Some(stored_written(&e, true)),
                state: Some(state),
            }));
        }
        let (ev, audience) = match &ev.event {
            Some(Event::Opened(o)) => {
                c.check_members("case_event.opened.invite", &o.invite)?;
                for (i, a) in o.alert_ids.iter().enumerate() {
                    let id = EntryId::from_slice(a).unwrap_or(EntryId([0; 32]));
                    match c.store.get_by_id(&id).map_err(ApiError::from)? {
                        Some(e) if matches!(e.body.payload, Some(Payload::Alert(_))) => {}
                        _ => {
                            return Err(ApiError::field(
                                &format!("case_event.opened.alert_ids[{i}]"),
                                format!("this node holds no alert {}", hex::encode(a)),
                            )
                            .into());
                        }
                    }
                }
                let audience = o.invite.clone();
                (ev, audience)
            }
            _ => {
                let case_id = id32("case_event.case_id", &ev.case_id)?;
                let st = c.store.clone();
                let events = blocking(move || CaseEvents::load(&st, &case_id)).await?;
                if events.stored >= MAX_THREAD {
                    return Err(ApiError::Precondition(format!(
                        "case {} has {MAX_THREAD} entries, the most this node folds: record further events in a new case",
                        short(&case_id)
                    ))
                    .into());
                }
                let state = events.fold(&case_id);
                if !state.known {
                    return Err(ApiError::NotFound(format!(
                        "this node holds no case {}",
                        hex::encode(case_id)
                    ))
                    .into());
                }
                case::check_allowed(&state, &ev, &me).map_err(ApiError::Precondition)?;
                match &ev.event {
                    Some(Event::Invitation(i)) => {
                        c.check_members("case_event.invitation.provinces", &i.provinces)?
                    }
                    Some(Event::Handover(h)) => {
                        c.check_members("case_event.handover.to", std::iter::once(&h.to))?
                    }
                    _ => {}
                }
                let mut ev = ev.clone();
                ev.parents = state.heads.clone();
                if !case::newcomers(&state, &ev).is_empty() {
                    ev.history = events.items.iter().map(|i| i.5.clone()).collect();
                }
                let audience = case::circle(&state, &ev, &me);
                (ev, audience)
            }
        };
        let a = c
            .append(Payload::CaseEvent(ev.clone()), audience, reference, 0)
            .await?;
        let case_id: [u8; 32] = if ev.case_id.is_empty() {
            a.id.0
        } else {
            id32("case_event.case_id", &ev.case_id)?
        };
        let st = c.store.clone();
        // The event is durable: answer with it even if its case's state
        // cannot be worked out now.
        let state = blocking(move || case_state(&st, &case_id))
            .await
            .inspect_err(|e| tracing::warn!(error = %e.message(), "a case event was stored, but its case state could not be worked out"))
            .ok()
            .map(|(s, _)| s);
        Ok(Response::new(pb::CaseEventResponse {
            written: Some(written(&a, &me)),
            state,
        }))
    }

    async fn get_case(
        &self,
        req: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::CaseState>, Status> {
        let case_id = id32("case_id", &req.get_ref().case_id)?;
        let st = self.c.store.clone();
        let (state, n) = blocking(move || case_state(&st, &case_id)).await?;
        if n == 0 {
            return Err(ApiError::NotFound(format!(
                "this node holds no event of case {}",
                hex::encode(case_id)
            ))
            .into());
        }
        Ok(Response::new(state))
    }

    async fn list_cases(
        &self,
        req: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        let r = req.into_inner();
        let mut groups = vec![
            vec![Term::kind(pb::EntryKind::CaseEvent)],
            vec![Term::opening()],
        ];
        let mut problems = Vec::new();
        let mut bad = |f: &str, p: String| {
            problems.push(lienthong_core::alert::FieldError {
                field: f.into(),
                problem: p,
            })
        };
        for (i, s) in r.statuses.iter().enumerate() {
            if !matches!(pb::CaseStatus::try_from(*s), Ok(x) if x != pb::CaseStatus::Unspecified) {
                bad(
                    &format!("statuses[{i}]"),
                    format!("{s} is not a case status: use 1–4"),
                );
            }
        }
        if !r.province.is_empty() && !lienthong_core::provinces::is_province(&r.province) {
            bad(
                "province",
                format!("{:?} is not a province code, e.g. \"24\"", r.province),
            );
        }
        if !r.subject_id.is_empty() {
            let forms = lienthong_core::alert::identifier_forms(&r.subject_id);
            if forms.is_empty() {
                bad(
                    "subject_id",
                    "not a tax code, plate, citizen id or HS code in any accepted form".into(),
                );
            }
            groups.push(forms.iter().map(|f| Term::identifier(f)).collect());
        }
        if !r.text.trim().is_empty() {
            let w = query_words(&r.text);
            if w.is_empty() {
                bad("text", "contains no letters or digits to search for".into());
            }
            groups.extend(w.into_iter().map(|t| vec![t]));
        }
        if r.page_size > 200 {
            bad("page_size", format!("{} is more than 200", r.page_size));
        }
        let before = parse_token(&r.page_token, &mut bad);
        if !problems.is_empty() {
            return Err(ApiError::Invalid(lienthong_core::alert::InvalidInput(problems)).into());
        }
        let limit = if r.page_size == 0 {
            50
        } else {
            r.page_size as usize
        };
        let st = self.c.store.clone();
        let (cases, next) = blocking(move || {
            let mut out = Vec::new();
            let mut seen = BTreeSet::new();
            let mut before = before;
            let mut scanned = 0;
            loop {
                let page = st.query(&Query {
                    groups: groups.clone(),
                    before_cursor: before,
                    limit: 100,
                    max_scan: 5_000,
                    ..Default::default()
                })?;
                for e in &page.entries {
                    scanned += 1;
                    let t = e.body.created_unix_ms;
                    if (r.opened_from_unix_ms > 0 && t < r.opened_from_unix_ms)
                        || (r.opened_to_unix_ms > 0 && t >= r.opened_to_unix_ms)
                    {
                        continue;
                    }
                    // The opening itself, or (on a newcomer) the event
                    // that brought it along.
                    let case_id = case_of(e);
                    if !seen.insert(case_id) {
                        continue;
                    }
                    let (s, _) = case_state(&st, &case_id)?;
                    if !r.statuses.is_empty() && !r.statuses.contains(&s.status) {
                        continue;
                    }
                    if !r.province.is_empty()
                        && s.lead != r.province
                        && !s.members.contains(&r.province)
                    {
                        continue;
                    }
                    out.push(s);
                    if out.len() == limit {
                        return Ok((out, Some(e.cursor)));
                    }
                }
                match page.next_before {
                    Some(b) if scanned < MAX_SCAN => before = Some(b),
                    Some(b) => return Ok((out, Some(b))),
                    None => return Ok((out, None)),
                }
            }
        })
        .await?;
        Ok(Response::new(pb::ListCasesResponse {
            cases,
            next_page_token: next.map(|c| format!("c{c}")).unwrap_or_default(),
        }))
    }

    type WatchCaseStream = CaseStream;

    async fn watch_case(
        &self,
        req: Request<pb::GetCaseRequest>,
    ) -> Result<Response<Self::WatchCaseStream>, Status> {
        let case_id = id32("case_id", &req.get_ref().case_id)?;
        let store = self.c.store.clone();
        let st = store.clone();
        let (first, n) = blocking(move || case_state(&st, &case_id)).await?;
        if n == 0 {
            return Err(ApiError::NotFound(format!(
                "this node holds no event of case {}",
                hex::encode(case_id)
            ))
            .into());
        }
        let (mut out, rx) =
            crate::stopping::Outbox::channel(16, self.c.stopping.clone(), "watch again");
        tokio::spawn(async move {
            let mut durable = store.subscribe();
            let mut last = first.clone();
            if !out.send(first).await {
                return;
            }
            loop {
                if !out.wait_for_change(&mut durable).await {
                    return;
                }
                // Many entries may land at once: fold at most every 100 ms.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let st = store.clone();
                let Ok(Ok((s, _))) =
                    tokio::task::spawn_blocking(move || case_state(&st, &case_id)).await
                else {
                    return;
                };
                // Only a state that changed is sent (an event of this case
                // or a retraction of one; other entries change nothing).
                if s != last {
                    last = s.clone();
                    if !out.send(s).await {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(rx)))
    }

    async fn request_assistance(
        &self,
        req: Request<pb::AssistanceRequest>,
    ) -> Result<Response<pb::WrittenEntry>, Status> {
        let now = now_unix_ms();
        let mut r = validate::validate_assistance_request(Some(req.get_ref()), now)
            .map_err(ApiError::from)?;
        let c = &self.c;
        c.check_members("assistance_request.to", std::iter::once(&r.to))?;
        if !r.case_id.is_empty() {
            let id = id32("assistance_request.case_id", &r.case_id)?;
            let st = c.store.clone();
            let (s, _) = blocking(move || case_state(&st, &id)).await?;
            if !s.known {
                return Err(ApiError::field(
                    "assistance_request.case_id",
                    "this node holds no such case",
                )
                .into());
            }
        }
        let hours = match &c.peering {
            Some(p) => p
                .chain()
                .current()
                .manifest()
                .agreement
                .assistance_deadline_hours(),
            None => lienthong_core::agreement::DEFAULT_ASSISTANCE_DEADLINE_HOURS,
        };
        let latest = now.saturating_add(i64::from(hours) * 3_600_000);
        if r.due_unix_ms == 0 || r.due_unix_ms > latest {
            r.due_unix_ms = latest;
        }
        let deadline_hours =
            u32::try_from((r.due_unix_ms - now + 3_599_999) / 3_600_000).unwrap_or(hours);
        let reference = format!("assist {}", r.reference);
        let audience = vec![r.to.clone()];
        let a = c
            .append(
                Payload::AssistanceRequest(r),
                audience,
                reference,
                deadline_hours,
            )
            .await?;
        c.new_request.notify_one();
        Ok(Response::new(written(&a, c.me())))
    }

    async fn answer_assistance(
        &self,
        req: Request<pb::AssistanceAnswer>,
    ) -> Result<Response<pb::WrittenEntry>, Status> {
        let a =
            validate::validate_assistance_answer(Some(req.get_ref())).map_err(ApiError::from)?;
        let c = &self.c;
        let id = EntryId::from_slice(&a.request_id).unwrap_or(EntryId([0; 32]));
        let request = c.store.get_by_id(&id).map_err(ApiError::from)?;
        let asker = match &request {
            Some(e) => match &e.body.payload {
                Some(Payload::AssistanceRequest(r)) if r.to == c.me() => e.body.author.clone(),
                Some(Payload::AssistanceRequest(r)) => {
                    return Err(ApiError::Precondition(format!(
                        "the request is addressed to {}, not to this province ({})",
                        r.to,
                        c.me()
                    ))
                    .into());
                }
                _ => {
                    return Err(ApiError::field(
                        "assistance_answer.request_id",
                        "names an entry that is not an assistance request",
                    )
                    .into());
                }
            },
            None => {
                return Err(ApiError::NotFound(format!(
                    "this node holds no assistance request {}",
                    id.to_hex()
                ))
                .into());
            }
        };
        let reference = format!("answer {}", a.reference);
        let w = c
            .append(Payload::AssistanceAnswer(a), vec![asker], reference, 0)
            .await?;
        Ok(Response::new(written(&w, c.me())))
    }

    async fn list_assistance(
        &self,
        req: Request<pb::ListAssistanceRequest>,
    ) -> Result<Response<pb::ListAssistanceResponse>, Status> {
        let r = req.into_inner();
        let me = self.c.me().to_owned();
        let mut problems = Vec::new();
        let mut bad = |f: &str, p: String| {
            problems.push(lienthong_core::alert::FieldError {
                field: f.into(),
                problem: p,
            })
        };
        let mut groups = vec![vec![Term::kind(pb::EntryKind::AssistanceRequest)]];
        match r.direction.as_str() {
            "" => {}
            "sent" => groups.push(vec![Term::author(&me)]),
            "received" => groups.push(vec![Term::province(&me)]),
            d => bad(
                "direction",
                format!("{d:?}: use \"sent\", \"received\" or leave it empty"),
            ),
        }
        for (i, s) in r.statuses.iter().enumerate() {
            if !matches!(pb::AssistanceStatus::try_from(*s), Ok(x) if x != pb::AssistanceStatus::Unspecified)
            {
                bad(
                    &format!("statuses[{i}]"),
                    format!("{s} is not a status: use 1–4"),
                );
            }
        }
        if r.page_size > 500 {
            bad("page_size", format!("{} is more than 500", r.page_size));
        }
        let before = parse_token(&r.page_token, &mut bad);
        if !problems.is_empty() {
            return Err(ApiError::Invalid(lienthong_core::alert::InvalidInput(problems)).into());
        }
        let limit = if r.page_size == 0 {
            100
        } else {
            r.page_size as usize
        };
        let st = self.c.store.clone();
        let now = now_unix_ms();
        let (requests, next) = blocking(move || {
            let mut out = Vec::new();
            let mut before = before;
            loop {
                let page = st.query(&Query {
                    groups: groups.clone(),
                    before_cursor: before,
                    limit: 200,
                    max_scan: 5_000,
                    include_retracted: true,
                    ..Default::default()
                })?;
                for e in &page.entries {
                    if r.direction == "received" && e.body.author == me {
                        continue;
                    }
                    let Some(s) = assistance_state(&st, e, now)? else {
                        continue;
                    };
                    if !r.statuses.is_empty() && !r.statuses.contains(&s.status) {
                        continue;
                    }
                    out.push(s);
                    if out.len() == limit {
                        return Ok((out, Some(e.cursor)));
                    }
                }
                match page.next_before {
                    Some(b) => before = Some(b),
                    None => return Ok((out, None)),
                }
            }
        })
        .await?;
        Ok(Response::new(pb::ListAssistanceResponse {
            requests,
            next_page_token: next.map(|c| format!("c{c}")).unwrap_or_default(),
        }))
    }

    async fn record_inspection_event(
        &self,
        req: Request<pb::InspectionEvent>,
    ) -> Result<Response<pb::InspectionEventResponse>, Status> {
        let ev = validate::validate_inspection_event(Some(req.get_ref()), now_unix_ms())
            .map_err(ApiError::from)?;
        let c = &self.c;
        let me = c.me().to_owned();
        let reference = format!("inspection {}", ev.reference);
        let audience = match &ev.event {
            Some(inspection_event::Event::Plan(p)) => {
                c.check_members("inspection.plan.provinces", &p.provinces)?;
                p.provinces.clone()
            }
            _ => {
                let plan_id = id32("inspection.plan_id", &ev.plan_id)?;
                let st = c.store.clone();
                let (s, _) = blocking(move || inspection_state(&st, &plan_id)).await?;
                if !s.known {
                    return Err(ApiError::NotFound(format!(
                        "this node holds no inspection plan {}",
                        hex::encode(plan_id)
                    ))
                    .into());
                }
                let part = s.participants.iter().find(|p| p.province == me);
                let Some(part) = part else {
                    return Err(ApiError::Precondition(format!(
                        "{me} is not in this inspection plan"
                    ))
                    .into());
                };
                match &ev.event {
                    Some(inspection_event::Event::Acceptance(_)) if s.planned_by == me => {
                        return Err(ApiError::Precondition(
                            "the planning province does not answer its own plan".into(),
                        )
                        .into());
                    }
                    Some(inspection_event::Event::Acceptance(_)) if part.answered => {
                        return Err(ApiError::Precondition(format!(
                            "{me} has already answered this plan"
                        ))
                        .into());
                    }
                    Some(inspection_event::Event::Report(_)) if !part.accepted => {
                        return Err(ApiError::Precondition(format!(
                            "{me} has not accepted this plan; accept it before reporting"
                        ))
                        .into());
                    }
                    _ => {}
                }
                s.participants
                    .iter()
                    .map(|p| p.province.clone())
                    .filter(|p| *p != me)
                    .collect()
            }
        };
        let a = c
            .append(Payload::Inspection(ev.clone()), audience, reference, 0)
            .await?;
        let plan_id: [u8; 32] = if ev.plan_id.is_empty() {
            a.id.0
        } else {
            id32("inspection.plan_id", &ev.plan_id)?
        };
        let st = c.store.clone();
        // Durable: answered with even if the plan's state cannot be
        // worked out now.
        let state = blocking(move || inspection_state(&st, &plan_id))
            .await
            .inspect_err(|e| tracing::warn!(error = %e.message(), "an inspection event was stored, but its plan's state could not be worked out"))
            .ok()
            .map(|(s, _)| s);
        Ok(Response::new(pb::InspectionEventResponse {
            written: Some(written(&a, &me)),
            state,
        }))
    }

    async fn get_inspection(
        &self,
        req: Request<pb::GetInspectionRequest>,
    ) -> Result<Response<pb::InspectionState>, Status> {
        let plan_id = id32("plan_id", &req.get_ref().plan_id)?;
        let st = self.c.store.clone();
        let (s, n) = blocking(move || inspection_state(&st, &plan_id)).await?;
        if n == 0 {
            return Err(ApiError::NotFound(format!(
                "this node holds no event of plan {}",
                hex::encode(plan_id)
            ))
            .into());
        }
        Ok(Response::new(s))
    }

    async fn record_meeting(
        &self,
        req: Request<pb::Meeting>,
    ) -> Result<Response<pb::WrittenEntry>, Status> {
        let m = validate::validate_meeting(Some(req.get_ref()), now_unix_ms())
            .map_err(ApiError::from)?;
        let c = &self.c;
        c.check_members("meeting.participants", &m.participants)?;
        let reference = format!("meeting {}", m.reference);
        let audience = m.participants.clone();
        let a = c
            .append(Payload::Meeting(m), audience, reference, 0)
            .await?;
        Ok(Response::new(written(&a, c.me())))
    }

    async fn report(
        &self,
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let r = req.into_inner();
        if r.from_unix_ms < 0 {
            return Err(ApiError::field(
                "from_unix_ms",
                "times are milliseconds since 1970, not negative",
            )
            .into());
        }
        if r.to_unix_ms <= r.from_unix_ms {
            return Err(ApiError::field(
                "to_unix_ms",
                "the period must end after it starts (from inclusive, to exclusive, ms since 1970)",
            )
            .into());
        }
        let st = self.c.store.clone();
        let me = self.c.me().to_owned();
        let out = blocking(move || compute_report(&st, &me, r.from_unix_ms, r.to_unix_ms)).await?;
        Ok(Response::new(out))
    }
}

/// Scans the entries created in the period and folds what they touch.
fn compute_report(
    store: &Store,
    me: &str,
    from: i64,
    to: i64,
) -> Result<pb::ReportResponse, ApiError> {
    let now = now_unix_ms();
    let mut held: Vec<StoredEntry> = Vec::new();
    let mut cursor = 0;
    loop {
        let batch = store.entries_from(cursor, 1000)?;
        let Some(last) = batch.last() else { break };
        cursor = last.cursor + 1;
        held.extend(batch.into_iter().filter(|e| {
            let t = e.body.created_unix_ms;
            t >= from && t < to && !matches!(e.body.payload, Some(Payload::Receipt(_)) | None)
        }));
    }
    let mut case_ids: BTreeSet<[u8; 32]> = BTreeSet::new();
    let mut requests = Vec::new();
    for e in &held {
        match &e.body.payload {
            Some(Payload::CaseEvent(ev)) => {
                case_ids.insert(if ev.case_id.is_empty() {
                    e.id.0
                } else {
                    ev.case_id.as_slice().try_into().unwrap_or([0; 32])
                });
            }
            Some(Payload::AssistanceRequest(_)) => {
                if let Some(s) = assistance_state(store, e, now)? {
                    requests.push(s);
                }
            }
            _ => {}
        }
    }
    let cases: Vec<pb::CaseState> = case_ids
        .iter()
        .map(|id| case_state(store, id).map(|(s, _)| s))
        .collect::<Result<_, _>>()?;
    let entries: Vec<report::ReportEntry<'_>> = held
        .iter()
        .filter_map(|e| {
            Some(report::ReportEntry {
                id: e.id.0,
                author: &e.body.author,
                created_unix_ms: e.body.created_unix_ms,
                payload: e.body.payload.as_ref()?,
                retracted: e.retracted_by.is_some(),
            })
        })
        .collect();
    Ok(report::report(from, to, me, &entries, &cases, &requests))
}

fn parse_token(t: &str, bad: &mut impl FnMut(&str, String)) -> Option<u64> {
    if t.is_empty() {
        return None;
    }
    match t.strip_prefix('c').and_then(|c| c.parse::<u64>().ok()) {
        Some(c) => Some(c),
        None => {
            bad(
                "page_token",
                "not a token this node issued: pass next_page_token unchanged".into(),
            );
            None
        }
    }
}

/// The case an entry of a case belongs to.
fn case_of(e: &StoredEntry) -> [u8; 32] {
    match &e.body.payload {
        Some(Payload::CaseEvent(ev)) if !ev.case_id.is_empty() => {
            ev.case_id.as_slice().try_into().unwrap_or([0; 32])
        }
        _ => e.id.0,
    }
}

/// The wire answer for an entry already stored.
pub fn stored_written(e: &StoredEntry, duplicate: bool) -> pb::WrittenEntry {
    pb::WrittenEntry {
        entry_id: e.id.0.to_vec(),
        index: e.body.index,
        duplicate,
        created_unix_ms: e.body.created_unix_ms,
        author: e.body.author.clone(),
        cursor: e.cursor,
    }
}

impl Coordination {
    /// Retracts an entry this node authored (see `Alerts.Retract`).
    pub async fn retract(
        &self,
        target: &[u8],
        reason: &str,
        replaced_by: Option<[u8; 32]>,
    ) -> Result<pb::WrittenEntry, Status> {
        let _held = self.retracting.lock().await;
        self.retract_held(target, reason, replaced_by).await
    }

    /// [`Coordination::retract`], for a caller that holds `retracting`.
    pub async fn retract_held(
        &self,
        target: &[u8],
        reason: &str,
        replaced_by: Option<[u8; 32]>,
    ) -> Result<pb::WrittenEntry, Status> {
        let id = EntryId::from_slice(target).ok_or_else(|| {
            ApiError::field(
                "entry_id",
                format!("{} bytes: an entry id is 32 bytes", target.len()),
            )
        })?;
        let reason = validate::validate_reason("reason", reason).map_err(ApiError::from)?;
        let reference = format!("retract {}", id.to_hex());
        if let Some(e) = self
            .store
            .get_by_reference(&reference)
            .map_err(ApiError::from)?
        {
            return Ok(stored_written(&e, true));
        }
        let Some(t) = self.store.get_by_id(&id).map_err(ApiError::from)? else {
            return Err(
                ApiError::NotFound(format!("this node holds no entry {}", id.to_hex())).into(),
            );
        };
        if t.body.author != self.me() {
            return Err(ApiError::Precondition(format!(
                "only its author ({}) can retract this entry",
                t.body.author
            ))
            .into());
        }
        match &t.body.payload {
            Some(Payload::Receipt(_) | Payload::Retraction(_) | Payload::Escalation(_)) => {
                return Err(ApiError::Precondition(
                    "receipts, retractions and escalations record what happened and cannot be retracted".into(),
                )
                .into());
            }
            Some(Payload::CaseEvent(ev))
                if !matches!(
                    ev.event,
                    Some(Event::InspectionResult(_) | Event::Seizure(_) | Event::Decision(_))
                ) =>
            {
                return Err(ApiError::Precondition(format!(
                    "a case's {} cannot be retracted: the case's course is fixed; record a new event instead (only inspection results, seizure records and decisions can be retracted)",
                    case::event_kind(ev)
                ))
                .into());
            }
            _ => {}
        }
        if t.retracted_by.is_some() {
            return Err(ApiError::Precondition("the entry is already retracted".into()).into());
        }
        let audience: Vec<String> = t
            .body
            .audience
            .iter()
            .filter(|m| *m != self.me())
            .cloned()
            .collect();
        let a = self
            .append(
                Payload::Retraction(pb::Retraction {
                    target: id.0.to_vec(),
                    reason,
                    replaced_by: replaced_by.map(|r| r.to_vec()).unwrap_or_default(),
                }),
                audience,
                reference,
                0,
            )
            .await?;
        Ok(written(&a, self.me()))
    }
}

/// Writes an Escalation for each of this node's assistance requests once
/// its deadline passes unanswered: a signed flag to the province asked and
/// to the members the agreement names. Wakes at the next deadline, when
/// this node writes a new request, and at least every minute; nothing else
/// can make a request overdue sooner.
pub async fn escalate(c: Coordination) {
    let mut stopping = c.stopping.clone();
    loop {
        let st = c.store.clone();
        let me = c.me().to_owned();
        let now = now_unix_ms();
        let scan = tokio::task::spawn_blocking(
            move || -> Result<(Vec<pb::AssistanceState>, Option<i64>), ApiError> {
                let mut due = Vec::new();
                let mut next: Option<i64> = None;
                let mut before = None;
                loop {
                    let page = st.query(&Query {
                        groups: vec![
                            vec![Term::kind(pb::EntryKind::AssistanceRequest)],
                            vec![Term::author(&me)],
                        ],
                        before_cursor: before,
                        limit: 500,
                        max_scan: 5_000,
                        ..Default::default()
                    })?;
                    for e in &page.entries {
                        let Some(s) = assistance_state(&st, e, now)? else {
                            continue;
                        };
                        if assistance::needs_escalation(&s) {
                            due.push(s);
                        } else if s.status == pb::AssistanceStatus::Open as i32 {
                            let d = s.request.as_ref().map_or(i64::MAX, |r| r.due_unix_ms);
                            next = Some(next.map_or(d, |n: i64| n.min(d)));
                        }
                    }
                    match page.next_before {
                        Some(b) => before = Some(b),
                        None => break,
                    }
                }
                Ok((due, next))
            },
        )
        .await;
        let next = match scan {
            Ok(Ok((due, next))) => {
                for s in due {
                    if let Err(e) = write_escalation(&c, &s).await {
                        tracing::warn!(error = %e, request = %short(&s.request_id), "could not write an escalation");
                    }
                }
                next
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "escalation scan failed");
                None
            }
            Err(_) => None,
        };
        let wait = next
            .map(|d| Duration::from_millis(u64::try_from(d + 1 - now_unix_ms()).unwrap_or(0)))
            .unwrap_or(Duration::from_secs(60))
            .clamp(Duration::from_millis(200), Duration::from_secs(60));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = c.new_request.notified() => {}
            _ = stopping.changed() => return,
        }
    }
}

async fn write_escalation(c: &Coordination, s: &pb::AssistanceState) -> Result<(), Status> {
    let Some(r) = &s.request else { return Ok(()) };
    let mut audience: BTreeMap<String, ()> = BTreeMap::new();
    audience.insert(r.to.clone(), ());
    if let Some(p) = &c.peering {
        let chain = p.chain();
        let m = chain.current();
        let members = m.member_codes();
        for e in m.manifest().agreement.escalate_to() {
            if members.contains(e) {
                audience.insert(e.clone(), ());
            }
        }
    }
    let reference = format!("escalate {}", hex::encode(&s.request_id));
    let a = c
        .append(
            Payload::Escalation(pb::Escalation {
                request_id: s.request_id.clone(),
                due_unix_ms: r.due_unix_ms,
                overdue_member: r.to.clone(),
            }),
            audience.into_keys().collect(),
            reference,
            0,
        )
        .await?;
    tracing::info!(request = %short(&s.request_id), to = %r.to, index = a.index, "assistance request overdue: escalated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lienthong_store::{FeedSigner, OpenOptions, WriterConfig};

    const ORIGIN: &str = "lienthong.test/cases/24";

    /// A store of member 24 in `dir`, and its feed writer.
    fn store_and_writer(dir: &std::path::Path) -> (Store, Arc<Writer>) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[24; 32]);
        let store = Store::open(&OpenOptions {
            dir: dir.to_path_buf(),
            member: "24".into(),
            origin: ORIGIN.into(),
            verifying_keys: vec![key.verifying_key()],
            cache_bytes: lienthong_store::DEFAULT_CACHE_BYTES,
        })
        .expect("store");
        let signer = FeedSigner {
            author: "24".into(),
            key: key.clone(),
            note_signer: lienthong_log::NoteSigner::new(ORIGIN, key).expect("signer"),
        };
        let writer = Writer::start(store.clone(), signer, WriterConfig::default()).expect("writer");
        (store, Arc::new(writer))
    }

    /// Appends events `range` of case `case_id`, many at a time (so they
    /// share group commits).
    async fn append_events(writer: &Arc<Writer>, case_id: [u8; 32], range: std::ops::Range<usize>) {
        let mut set = tokio::task::JoinSet::new();
        for i in range {
            let writer = writer.clone();
            set.spawn(async move {
                writer
                    .append(NewEntry {
                        payload: Payload::CaseEvent(pb::CaseEvent {
                            case_id: case_id.to_vec(),
                            event: Some(Event::InspectionResult(pb::InspectionResult {
                                findings: format!("inspection {i}"),
                                ..Default::default()
                            })),
                            ..Default::default()
                        }),
                        audience: vec![],
                        manifest_version: 0,
                        agreement_hash: vec![],
                        reference: None,
                        handling: 0,
                        response_deadline_hours: 0,
                        openings: pb::OpeningSet::default(),
                    })
                    .await
            });
        }
        while let Some(done) = set.join_next().await {
            done.expect("task").expect("appended");
        }
    }

    /// A case of exactly `MAX_THREAD` entries is folded whole, and a
    /// system recording one more event there is told to open a new case.
    /// One entry more (received, say) and the case is refused with a
    /// precondition error naming the limit, never folded from part of its
    /// entries.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_case_past_the_thread_limit_is_refused_not_folded_in_part() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, writer) = store_and_writer(dir.path());
        let case_id = [7u8; 32];
        append_events(&writer, case_id, 0..MAX_THREAD).await;

        let entries = thread(&store, &case_id).expect("a thread at the limit is read");
        assert_eq!(entries.len(), MAX_THREAD);
        let (_, events) = case_state(&store, &case_id).expect("folds at the limit");
        assert_eq!(events, MAX_THREAD);

        // A system recording one more event is told to open a new case.
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let service = CasesService {
            c: Coordination {
                store: store.clone(),
                writer: writer.clone(),
                in_flight: Arc::new(Semaphore::new(16)),
                peering: None,
                stopping,
                new_request: Arc::default(),
                retracting: Arc::default(),
            },
        };
        let refused = service
            .record_case_event(Request::new(pb::CaseEvent {
                case_id: case_id.to_vec(),
                reference: "one-more".into(),
                event: Some(Event::InspectionResult(pb::InspectionResult {
                    inspected_unix_ms: now_unix_ms() - 60_000,
                    location: Some(pb::Location {
                        province: "24".into(),
                        ..Default::default()
                    }),
                    findings: "one event more than the case may hold".into(),
                    ..Default::default()
                })),
                ..Default::default()
            }))
            .await
            .expect_err("the case is full");
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{refused:?}"
        );
        assert!(
            refused
                .message()
                .contains(&format!("has {MAX_THREAD} entries"))
                && refused.message().contains("new case"),
            "{refused:?}"
        );
        assert_eq!(
            thread(&store, &case_id).expect("unchanged").len(),
            MAX_THREAD
        );

        append_events(&writer, case_id, MAX_THREAD..MAX_THREAD + 1).await;
        for result in [
            thread(&store, &case_id).map(|_| ()),
            case_state(&store, &case_id).map(|_| ()),
        ] {
            match result {
                Err(ApiError::Precondition(m)) => {
                    assert!(
                        m.contains(&format!("more than {MAX_THREAD} entries")),
                        "{m}"
                    )
                }
                other => panic!("{MAX_THREAD} + 1 entries: {other:?}"),
            }
        }
        // Another case beside it is not affected.
        append_events(&writer, [8u8; 32], 0..3).await;
        assert_eq!(case_state(&store, &[8u8; 32]).expect("folds").1, 3);
        drop(service);
        Arc::into_inner(writer).expect("one writer").shutdown();
    }
}
