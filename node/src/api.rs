//! gRPC services: `lienthong.v1.Alerts` for local systems and
//! `lienthong.v1.Audit` for auditors.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use lienthong_core::alert::{identifier_forms, validate_alert};
use lienthong_core::entry::EntryId;
use lienthong_core::proto::{
    self as pb, alerts_server::Alerts, audit_server::Audit, entry_body::Payload,
    get_entry_request::Key,
};
use lienthong_core::provinces::is_province;
use lienthong_core::terms::{Term, query_words};
use lienthong_store::{NewEntry, Query, Store, StoredEntry, Verification, Writer};
use tokio::sync::Semaphore;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::status::ApiError;

/// Most entries a query page may hold.
const MAX_PAGE: u32 = 1000;
/// Candidates a query examines before returning a partial page.
const MAX_SCAN: usize = 50_000;
/// Most envelopes per GetEntries call.
const MAX_ENTRIES: usize = 1000;
/// Most bytes of envelopes per GetEntries answer.
const MAX_ANSWER_BYTES: usize = 3 * 1024 * 1024;

pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Converts a stored entry to its wire form.
pub fn to_proto(e: StoredEntry) -> pb::StoredEntry {
    pb::StoredEntry {
        envelope: e.envelope,
        entry_id: e.id.0.to_vec(),
        body: Some(e.body),
        cursor: e.cursor,
        verification: match e.verification {
            Verification::AuthoredHere => pb::Verification::AuthoredHere,
            Verification::Verified => pb::Verification::Verified,
        } as i32,
        stored_unix_ms: e.stored_unix_ms,
        openings: e.openings.openings,
        retracted_by: e.retracted_by.map(|i| i.0.to_vec()).unwrap_or_default(),
        replaced_by: e.replaced_by.map(|i| i.0.to_vec()).unwrap_or_default(),
    }
}

/// 32 random bytes for a redaction salt.
fn random_salt() -> [u8; 32] {
    let mut s = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut s);
    s
}

/// The Alerts service.
pub struct AlertsService {
    pub metrics: crate::metrics::Metrics,
    pub store: Store,
    pub writer: Arc<Writer>,
    pub in_flight: Arc<Semaphore>,
    /// Turns true when the node stops: open Watch streams end, so that
    /// graceful shutdown does not wait for them forever.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// The manifest in force, if the node is federated: its agreement
    /// decides each alert's audience.
    pub peering: Option<Arc<crate::peer::Peering>>,
    /// Retraction, shared with the Cases service.
    pub coordination: crate::cases::Coordination,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::StoredEntry, Status>> + Send>>;

#[tonic::async_trait]
impl Alerts for AlertsService {
    async fn submit(
        &self,
        req: Request<pb::SubmitAlertRequest>,
    ) -> Result<Response<pb::SubmitAlertResponse>, Status> {
        let started = std::time::Instant::now();
        let r = self.submit_alert(req).await.map(Response::into_inner);
        self.metrics
            .submitted
            .get_or_create(&crate::metrics::outcome(&r))
            .inc();
        if r.is_ok() {
            self.metrics
                .submit_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        r.map(Response::new)
    }

    async fn get(
        &self,
        req: Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::StoredEntry>, Status> {
        let found = match &req.get_ref().key {
            None => {
                return Err(ApiError::field(
                    "key",
                    "missing: set one of entry_id, entry_id_hex, own_index, reference",
                )
                .into());
            }
            Some(Key::EntryId(b)) => {
                let id = EntryId::from_slice(b).ok_or_else(|| {
                    ApiError::field(
                        "entry_id",
                        format!("{} bytes: an entry id is 32 bytes", b.len()),
                    )
                })?;
                self.store.get_by_id(&id)
            }
            Some(Key::EntryIdHex(h)) => {
                let id = EntryId::from_hex(h).ok_or_else(|| {
                    ApiError::field("entry_id_hex", "must be 64 hexadecimal characters")
                })?;
                self.store.get_by_id(&id)
            }
            Some(Key::OwnIndex(i)) => self.store.get_by_own_index(*i),
            Some(Key::Reference(r)) => self.store.get_by_reference(r),
        }
        .map_err(ApiError::from)?;
        match found {
            Some(e) => Ok(Response::new(to_proto(e))),
            None => Err(ApiError::NotFound("no such entry on this node".into()).into()),
        }
    }

    async fn query(
        &self,
        req: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let q = build_query(req.get_ref())?;
        let store = self.store.clone();
        let page = tokio::task::spawn_blocking(move || store.query(&q))
            .await
            .map_err(|e| Status::internal(format!("query task: {e}")))?
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::QueryResponse {
            entries: page.entries.into_iter().map(to_proto).collect(),
            next_page_token: page
                .next_before
                .map(|c| format!("c{c}"))
                .unwrap_or_default(),
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        const RESUME: &str = "resume from the cursor after the last entry received";
        let mut cursor = req.get_ref().from_cursor;
        let store = self.store.clone();
        let (mut out, rx) = crate::stopping::Outbox::channel(256, self.stopping.clone(), RESUME);
        tokio::spawn(async move {
            let mut durable = store.subscribe();
            loop {
                // Marked seen before reading: a write after this wakes the
                // wait below, so nothing written meanwhile is missed, and
                // nothing is read while there is nothing new.
                if cursor >= durable.borrow_and_update().next_cursor {
                    if !out.wait_for_change(&mut durable).await {
                        return;
                    }
                    continue;
                }
                let s = store.clone();
                let batch =
                    match tokio::task::spawn_blocking(move || s.entries_from(cursor, 256)).await {
                        Ok(Ok(b)) => b,
                        Ok(Err(e)) => {
                            out.fail(ApiError::from(e).into()).await;
                            return;
                        }
                        Err(_) => return,
                    };
                for e in batch {
                    cursor = e.cursor + 1;
                    if !out.send(to_proto(e)).await {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(rx)))
    }

    async fn retract(
        &self,
        req: Request<pb::RetractRequest>,
    ) -> Result<Response<pb::WrittenEntry>, Status> {
        let r = req.get_ref();
        self.coordination
            .retract(&r.entry_id, &r.reason, None)
            .await
            .map(Response::new)
    }

    async fn correct(
        &self,
        req: Request<pb::CorrectRequest>,
    ) -> Result<Response<pb::CorrectResponse>, Status> {
        let r = req.into_inner();
        let old = EntryId::from_slice(&r.entry_id).ok_or_else(|| {
            ApiError::field(
                "entry_id",
                format!("{} bytes: an entry id is 32 bytes", r.entry_id.len()),
            )
        })?;
        let reason = lienthong_core::coordination::validate::validate_reason("reason", &r.reason)
            .map_err(ApiError::from)?;
        // No other retraction or correction between the checks below and
        // this one's retraction.
        let _held = self.coordination.retracting.lock().await;
        let target = self
            .store
            .get_by_id(&old)
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("this node holds no entry {old}")))?;
        let Some(Payload::Alert(old_alert)) = &target.body.payload else {
            return Err(ApiError::Precondition(
                "only alerts are corrected this way; retract other entries and write them again"
                    .into(),
            )
            .into());
        };
        if target.body.author != self.store.member() {
            return Err(ApiError::Precondition(format!(
                "only its author ({}) can correct this alert",
                target.body.author
            ))
            .into());
        }
        if r.alert
            .as_ref()
            .is_some_and(|a| a.reference == old_alert.reference)
        {
            return Err(ApiError::field(
                "alert.reference",
                "the corrected alert needs its own reference, not the old alert's",
            )
            .into());
        }
        if let Some(by) = &target.retracted_by {
            // Retried after both were written: answer as then.
            let retraction = self.store.get_by_id(by).map_err(ApiError::from)?;
            let replacement = match target.replaced_by {
                Some(id) => self.store.get_by_id(&id).map_err(ApiError::from)?,
                None => None,
            };
            return match (retraction, replacement) {
                (Some(x), Some(n))
                    if r.alert.as_ref().map(|a| &a.reference)
                        == match &n.body.payload {
                            Some(Payload::Alert(a)) => Some(&a.reference),
                            _ => None,
                        } =>
                {
                    // The same reference: a retry only if it says the same.
                    if !says(&n, r.alert.as_ref()) {
                        return Err(ApiError::field(
                            "alert.reference",
                            "names the alert that already replaced this one, which says something else: a different correction needs a reference of its own, and corrects that alert",
                        )
                        .into());
                    }
                    Ok(Response::new(pb::CorrectResponse {
                        replacement: Some(crate::cases::stored_written(&n, true)),
                        retraction: Some(crate::cases::stored_written(&x, true)),
                    }))
                }
                _ => Err(ApiError::Precondition("the alert is already retracted".into()).into()),
            };
        }
        let requested = r.alert.clone();
        let new = self
            .submit_alert(Request::new(pb::SubmitAlertRequest { alert: r.alert }))
            .await?
            .into_inner();
        let new_id: [u8; 32] = new
            .entry_id
            .as_slice()
            .try_into()
            .map_err(|_| Status::internal("entry id"))?;
        if new.duplicate {
            // The reference names an alert stored before. That is this
            // correction retried after its replacement was written but not
            // the retraction; nothing else may replace the old alert.
            let earlier = self
                .store
                .get_by_id(&EntryId(new_id))
                .map_err(ApiError::from)?;
            // Written after the old alert (own entries' times follow
            // their cursors), still standing, and saying what this
            // request says: a retry sends the same alert again, while an
            // unrelated alert that reused the reference says something
            // else.
            let fits = earlier.is_some_and(|e| {
                e.retracted_by.is_none() && e.cursor > target.cursor && says(&e, requested.as_ref())
            });
            if !fits {
                return Err(ApiError::field(
                    "alert.reference",
                    "names an alert stored before, which cannot replace this one (it is older than it, retracted, or says something else): a corrected alert needs a reference of its own",
                )
                .into());
            }
        }
        let retraction = self
            .coordination
            .retract_held(&r.entry_id, &reason, Some(new_id))
            .await?;
        Ok(Response::new(pb::CorrectResponse {
            replacement: Some(pb::WrittenEntry {
                entry_id: new.entry_id,
                index: new.index,
                duplicate: new.duplicate,
                created_unix_ms: new.created_unix_ms,
                author: new.author,
                cursor: new.cursor,
            }),
            retraction: Some(retraction),
        }))
    }
}

/// True if the stored own entry `e` is the alert `requested`, as
/// validated, with any withheld fields put back.
fn says(e: &StoredEntry, requested: Option<&pb::Alert>) -> bool {
    let (Some(Payload::Alert(stored)), Ok(valid)) =
        (&e.body.payload, validate_alert(requested, now_unix_ms()))
    else {
        return false;
    };
    let mut shown = lienthong_core::redaction::reveal(stored, &e.openings.openings);
    shown.redacted.clear();
    shown == valid.into_inner()
}

/// Turns a query request into store terms; every field is checked.
fn build_query(r: &pb::QueryRequest) -> Result<Query, ApiError> {
    let mut problems = Vec::new();
    let mut groups = Vec::new();
    let mut bad = |field: String, p: String| {
        problems.push(lienthong_core::alert::FieldError { field, problem: p })
    };

    if !r.categories.is_empty() {
        for (i, c) in r.categories.iter().enumerate() {
            if !matches!(pb::Category::try_from(*c), Ok(x) if x != pb::Category::Unspecified) {
                bad(
                    format!("categories[{i}]"),
                    format!("{c} is not a category: use 1–8 (see enum Category)"),
                );
            }
        }
        groups.push(r.categories.iter().map(|c| Term::category(*c)).collect());
    }
    if !r.severities.is_empty() {
        for (i, s) in r.severities.iter().enumerate() {
            if !matches!(pb::Severity::try_from(*s), Ok(x) if x != pb::Severity::Unspecified) {
                bad(
                    format!("severities[{i}]"),
                    format!("{s} is not a severity: use 1–4 (see enum Severity)"),
                );
            }
        }
        groups.push(r.severities.iter().map(|s| Term::severity(*s)).collect());
    }
    if !r.province.is_empty() {
        if !is_province(&r.province) {
            bad(
                "province".into(),
                format!(
                    "{:?} is not a province code, e.g. \"20\" for Lạng Sơn",
                    r.province
                ),
            );
        }
        groups.push(vec![Term::province(&r.province)]);
    }
    if !r.author.is_empty() {
        if !is_province(&r.author) {
            bad(
                "author".into(),
                format!("{:?} is not a member code, e.g. \"01\"", r.author),
            );
        }
        groups.push(vec![Term::author(&r.author)]);
    }
    if !r.subject_id.is_empty() {
        let forms = identifier_forms(&r.subject_id);
        if forms.is_empty() {
            bad(
                "subject_id".into(),
                "not a tax code, plate, citizen id or HS code in any accepted form".into(),
            );
        }
        groups.push(forms.iter().map(|f| Term::identifier(f)).collect());
    }
    if !r.text.trim().is_empty() {
        let words = query_words(&r.text);
        if words.is_empty() {
            bad(
                "text".into(),
                "contains no letters or digits to search for".into(),
            );
        }
        groups.extend(words.into_iter().map(|w| vec![w]));
    }
    if !r.kinds.is_empty() {
        for (i, k) in r.kinds.iter().enumerate() {
            if !matches!(pb::EntryKind::try_from(*k), Ok(x) if x != pb::EntryKind::Unspecified) {
                bad(
                    format!("kinds[{i}]"),
                    format!("{k} is not an entry kind: use 1–9 (see enum EntryKind)"),
                );
            }
        }
        groups.push(
            r.kinds
                .iter()
                .filter_map(|k| pb::EntryKind::try_from(*k).ok())
                .map(Term::kind)
                .collect(),
        );
    }
    for (field, t) in [
        ("created_from_unix_ms", r.created_from_unix_ms),
        ("created_to_unix_ms", r.created_to_unix_ms),
        ("observed_from_unix_ms", r.observed_from_unix_ms),
        ("observed_to_unix_ms", r.observed_to_unix_ms),
    ] {
        if t < 0 {
            bad(
                field.into(),
                "times are milliseconds since 1970, not negative".into(),
            );
        }
    }
    if r.page_size > MAX_PAGE {
        bad(
            "page_size".into(),
            format!(
                "{} is more than {MAX_PAGE}: ask for fewer and follow next_page_token",
                r.page_size
            ),
        );
    }
    let before_cursor = if r.page_token.is_empty() {
        None
    } else {
        match r
            .page_token
            .strip_prefix('c')
            .and_then(|c| c.parse::<u64>().ok())
        {
            Some(c) => Some(c),
            None => {
                bad("page_token".into(), "not a token this node issued: pass next_page_token from the previous answer unchanged".into());
                None
            }
        }
    };
    if !problems.is_empty() {
        return Err(ApiError::Invalid(lienthong_core::alert::InvalidInput(
            problems,
        )));
    }
    Ok(Query {
        groups,
        observed_from: (r.observed_from_unix_ms > 0).then_some(r.observed_from_unix_ms),
        observed_to: (r.observed_to_unix_ms > 0).then_some(r.observed_to_unix_ms),
        before_cursor,
        limit: if r.page_size == 0 {
            50
        } else {
            r.page_size as usize
        },
        max_scan: MAX_SCAN,
        include_retracted: r.include_retracted,
        created_from: (r.created_from_unix_ms > 0).then_some(r.created_from_unix_ms),
        created_to: (r.created_to_unix_ms > 0).then_some(r.created_to_unix_ms),
    })
}

impl AlertsService {
    async fn submit_alert(
        &self,
        req: Request<pb::SubmitAlertRequest>,
    ) -> Result<Response<pb::SubmitAlertResponse>, Status> {
        let alert =
            validate_alert(req.get_ref().alert.as_ref(), now_unix_ms()).map_err(ApiError::from)?;
        let reference = alert.get().reference.clone();
        // The agreement decides the audience; its hash and the manifest
        // version are signed into the entry so auditors can recompute it.
        let mut alert = alert.into_inner();
        let mut openings = pb::OpeningSet::default();
        let (audience, manifest_version, agreement_hash, handling, deadline) = match &self.peering {
            None => (Vec::new(), 0, Vec::new(), 0, 0),
            Some(p) => {
                let chain = p.chain();
                let m = chain.current().manifest();
                let d = lienthong_core::agreement::decide(
                    &m.agreement,
                    &m.member_codes(),
                    &p.me,
                    &alert,
                );
                // Fields withheld from any recipient are committed to in the
                // signed alert; their values travel only to those allowed.
                let withheld: std::collections::BTreeSet<String> =
                    d.redactions.values().flatten().cloned().collect();
                if !withheld.is_empty() {
                    openings.openings =
                        lienthong_core::redaction::redact(&mut alert, &withheld, &mut random_salt);
                    openings.withheld = d
                        .redactions
                        .iter()
                        .map(|(r, f)| pb::Withheld {
                            recipient: r.clone(),
                            fields: f.clone(),
                        })
                        .collect();
                }
                (
                    d.audience,
                    chain.current().version(),
                    lienthong_core::agreement::agreement_hash(&m.agreement).to_vec(),
                    d.handling.to_proto() as i32,
                    d.response_deadline_hours.unwrap_or(0),
                )
            }
        };
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        let a = self
            .writer
            .append(NewEntry {
                payload: Payload::Alert(alert),
                // Without a federation an entry is for its author only.
                audience,
                manifest_version,
                agreement_hash,
                reference: Some(reference),
                handling,
                response_deadline_hours: deadline,
                openings,
            })
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::SubmitAlertResponse {
            entry_id: a.id.0.to_vec(),
            index: a.index,
            duplicate: a.duplicate,
            created_unix_ms: a.created_unix_ms,
            author: self.store.member().to_owned(),
            cursor: a.cursor,
        }))
    }
}

/// The Audit service.
pub struct AuditService {
    pub store: Store,
    pub peering: Option<Arc<crate::peer::Peering>>,
    pub witness: Option<Arc<crate::witness::Witness>>,
}

/// Sends what is written to it as `BundleChunk`s of about 64 KiB.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<pb::BundleChunk, Status>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let data = std::mem::take(&mut self.buf);
            self.tx
                .blocking_send(Ok(pb::BundleChunk { data }))
                .map_err(|_| std::io::Error::other("the client went away"))?;
        }
        Ok(())
    }
}

impl AuditService {
    fn checkpoint_size(&self) -> Result<u64, ApiError> {
        self.store
            .latest_checkpoint()
            .map(|c| c.size)
            .ok_or_else(|| ApiError::Precondition("no checkpoint yet: the feed is empty or its first checkpoint is being signed; retry in a second".into()))
    }
}

#[tonic::async_trait]
impl Audit for AuditService {
    type ExportBundleStream = Pin<Box<dyn Stream<Item = Result<pb::BundleChunk, Status>> + Send>>;

    async fn export_bundle(
        &self,
        req: Request<pb::ExportBundleRequest>,
    ) -> Result<Response<Self::ExportBundleStream>, Status> {
        let Some(p) = self.peering.clone() else {
            return Err(ApiError::Precondition(
                "this node has no federation manifest; an audit bundle carries the manifest chain that names its keys".into(),
            )
            .into());
        };
        let r = req.into_inner();
        let sel = crate::export::Selection {
            member: r.member,
            from_unix_ms: r.from_unix_ms,
            to_unix_ms: r.to_unix_ms,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = ChunkWriter {
                tx: tx.clone(),
                buf: Vec::new(),
            };
            let r =
                crate::export::export(&store, &p.chain(), &p.key(), &sel, &mut out).and_then(|n| {
                    std::io::Write::flush(&mut out)?;
                    Ok(n)
                });
            match r {
                Ok((records, bytes)) => {
                    tracing::info!(records, bytes, member = %sel.member, "exported an audit bundle")
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "audit export failed");
                    let _ =
                        tx.blocking_send(Err(Status::internal(format!("export failed: {e:#}"))));
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_checkpoint(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        let (note, size, root) = if req.get_ref().cosigned {
            let cp = self
                .store
                .newest_cosigned_checkpoint()
                .map_err(ApiError::from)?
                .ok_or_else(|| {
                    ApiError::NotFound("no cosigned checkpoint yet: the other members are asked at most every checkpoint.cosign_interval_ms (and only in a federation); retry, or ask for the latest (cosigned = false)".into())
                })?;
            (cp.note, cp.size, cp.root)
        } else {
            let cp = self.store.latest_checkpoint().ok_or_else(|| {
                ApiError::NotFound("no checkpoint yet: the feed is empty or its first checkpoint is being signed; retry in a second".into())
            })?;
            let note = match self.store.latest_cosigned_note().map_err(ApiError::from)? {
                Some((size, note)) if size == cp.size => note,
                _ => cp.note.clone(),
            };
            (note, cp.size, cp.root)
        };
        Ok(Response::new(pb::GetCheckpointResponse {
            signed_note: note,
            size,
            root_hash: root.to_vec(),
            origin: self.store.origin().to_owned(),
        }))
    }

    async fn get_entries(
        &self,
        req: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<pb::GetEntriesResponse>, Status> {
        let r = req.get_ref();
        let size = self.checkpoint_size()?;
        if r.start >= r.end || r.end > size {
            return Err(ApiError::field(
                "end",
                format!(
                    "need start < end ≤ {size} (the latest checkpoint size); got start {} end {}",
                    r.start, r.end
                ),
            )
            .into());
        }
        // Keep the answer under every client's default 4 MiB message limit:
        // at least one envelope (≤ 1 MiB), then up to about 3 MiB.
        let (store, start, end) = (self.store.clone(), r.start, r.end);
        let envelopes = tokio::task::spawn_blocking(move || {
            store.feed_envelopes(start, end, MAX_ENTRIES, MAX_ANSWER_BYTES)
        })
        .await
        .map_err(|e| Status::internal(format!("entries task: {e}")))?
        .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetEntriesResponse { envelopes }))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::GetInclusionProofResponse>, Status> {
        let r = req.get_ref();
        let tree_size = if r.tree_size == 0 {
            self.checkpoint_size()?
        } else {
            r.tree_size
        };
        let (leaf, proof) = self
            .store
            .inclusion_proof(r.index, tree_size)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetInclusionProofResponse {
            index: r.index,
            tree_size,
            leaf_hash: leaf.0.to_vec(),
            hashes: proof.into_iter().map(|h| h.0.to_vec()).collect(),
        }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        let r = req.get_ref();
        let new_size = if r.new_size == 0 {
            self.checkpoint_size()?
        } else {
            r.new_size
        };
        let proof = self
            .store
            .consistency_proof(r.old_size, new_size)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetConsistencyProofResponse {
            old_size: r.old_size,
            new_size,
            hashes: proof.into_iter().map(|h| h.0.to_vec()).collect(),
        }))
    }

    async fn list_evidence(
        &self,
        req: Request<pb::ListEvidenceRequest>,
    ) -> Result<Response<pb::ListEvidenceResponse>, Status> {
        let r = req.get_ref();
        let limit = match r.limit {
            0 => 1000,
            n => n.min(1000) as usize,
        };
        let (store, after) = (self.store.clone(), r.after_id);
        let evidence = tokio::task::spawn_blocking(move || store.evidence(after, limit))
            .await
            .map_err(|e| Status::internal(format!("evidence task: {e}")))?
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListEvidenceResponse { evidence }))
    }

    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        // Cosigned first: both only grow, so the cosigned size never
        // exceeds the checkpoint size read after it.
        let (cosigned_size, cosigned_by) = self
            .store
            .latest_cosigned()
            .map_err(ApiError::from)?
            .unwrap_or((0, 0));
        let cp = self.store.latest_checkpoint();
        let cosignatures = match &cp {
            Some(c) => self
                .store
                .cosignatures(c.size)
                .map_err(ApiError::from)?
                .len() as u32,
            None => 0,
        };
        let store = self.store.clone();
        let (evidence, equivocations) =
            tokio::task::spawn_blocking(move || store.evidence_counts())
                .await
                .map_err(|e| Status::internal(format!("evidence count task: {e}")))?
                .map_err(ApiError::from)?;
        let mut out = pb::GetStatusResponse {
            member: self.store.member().to_owned(),
            feed_size: self.store.durable().feed_size,
            checkpoint_size: cp.map_or(0, |c| c.size),
            cosignatures,
            evidence,
            equivocations,
            writes_refused: self.store.failure().unwrap_or_default(),
            cosigned_size,
            cosigned_by: u32::try_from(cosigned_by).unwrap_or(u32::MAX),
            ..Default::default()
        };
        if let Some(p) = &self.peering {
            let chain = p.chain();
            out.federation = chain.current().manifest().federation.clone();
            out.manifest_version = chain.current().version();
            out.manifest_hash = chain.current().hash().to_vec();
            out.peers = p.peer_status();
            for peer in &mut out.peers {
                peer.replication_cursor = self
                    .store
                    .replication_cursor(&peer.member)
                    .map_err(ApiError::from)?;
                if let Some(w) = &self.witness {
                    peer.witnessed_size =
                        w.held(&peer.member).ok().flatten().map_or(0, |h| h.size());
                }
            }
        }
        Ok(Response::new(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each negative time in a query is reported under its own field.
    #[test]
    fn a_negative_time_in_a_query_is_reported_under_its_own_field() {
        let fields = |r: pb::QueryRequest| match build_query(&r) {
            Err(ApiError::Invalid(inv)) => inv.0.into_iter().map(|f| f.field).collect::<Vec<_>>(),
            other => panic!("expected INVALID_ARGUMENT, got {:?}", other.map(|_| ())),
        };
        assert_eq!(
            fields(pb::QueryRequest {
                created_to_unix_ms: -1,
                ..Default::default()
            }),
            ["created_to_unix_ms"]
        );
        assert_eq!(
            fields(pb::QueryRequest {
                observed_from_unix_ms: -1,
                observed_to_unix_ms: -5,
                ..Default::default()
            }),
            ["observed_from_unix_ms", "observed_to_unix_ms"]
        );
    }
}
