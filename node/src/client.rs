//! The CLI side of the API: `alert submit|get|list`, `feed verify`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use lienthong_core::proto::{
    self as pb, alerts_client::AlertsClient, audit_client::AuditClient, entry_body::Payload,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::{ApiSecurity, Config};

/// Connects to the node named by the config, as its CLI client.
pub async fn connect(cfg: &Config) -> Result<Channel> {
    let mut host = cfg.listen;
    if host.ip().is_unspecified() {
        host.set_ip(if host.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let channel = match &cfg.security {
        ApiSecurity::PlaintextDev => Endpoint::from_shared(format!("http://{host}"))?,
        ApiSecurity::Tls { .. } => {
            let (Some(cert), Some(key), Some(ca)) = (
                &cfg.cli.client_cert,
                &cfg.cli.client_key,
                &cfg.cli.server_ca,
            ) else {
                bail!(
                    "{}: [cli] needs client_cert, client_key and server_ca to reach a TLS API (see `lienthong client add`)",
                    cfg.path.display()
                );
            };
            let read =
                |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(ca)?))
                .identity(Identity::from_pem(read(cert)?, read(key)?))
                .domain_name(cfg.cli.server_name.clone());
            Endpoint::from_shared(format!("https://{host}"))?.tls_config(tls)?
        }
    };
    channel
        .connect()
        .await
        .with_context(|| format!("connecting to the node at {host} (is `lienthong run` up?)"))
}

/// Reads one alert or an array of alerts in proto3 JSON.
pub fn read_alerts(path: &Path) -> Result<Vec<pb::Alert>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let items = match v {
        serde_json::Value::Array(a) => a,
        other => vec![other],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value::<pb::Alert>(item).with_context(|| {
                format!("{} item {i}: not an Alert in proto3 JSON", path.display())
            })
        })
        .collect()
}

/// Explains a failed call, including every field violation.
pub fn explain(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let mut s = format!("{:?}: {}", status.code(), status.message());
    if let Some(br) = status.get_details_bad_request() {
        for v in br.field_violations {
            s.push_str(&format!("\n  - {}: {}", v.field, v.description));
        }
    }
    s
}

pub async fn submit(cfg: &Config, file: &Path, json: bool) -> Result<()> {
    let alerts = read_alerts(file)?;
    let mut client = AlertsClient::new(connect(cfg).await?);
    let mut failed = 0;
    for a in alerts {
        let reference = a.reference.clone();
        match client
            .submit(pb::SubmitAlertRequest { alert: Some(a) })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    println!(
                        "{} {reference}: entry {} at feed index {}",
                        if r.duplicate {
                            "already stored"
                        } else {
                            "stored"
                        },
                        hex::encode(&r.entry_id),
                        r.index
                    );
                }
            }
            Err(s) => {
                failed += 1;
                eprintln!("refused {reference}: {}", explain(&s));
            }
        }
    }
    if failed > 0 {
        bail!("{failed} alert(s) refused");
    }
    Ok(())
}

fn category_name(c: i32) -> &'static str {
    match pb::Category::try_from(c) {
        Ok(pb::Category::Smuggling) => "smuggling",
        Ok(pb::Category::TradeFraud) => "trade-fraud",
        Ok(pb::Category::Counterfeit) => "counterfeit",
        Ok(pb::Category::IntellectualProperty) => "intellectual-property",
        Ok(pb::Category::ProhibitedGoods) => "prohibited-goods",
        Ok(pb::Category::FoodSafety) => "food-safety",
        Ok(pb::Category::PoorQualityGoods) => "poor-quality-goods",
        Ok(pb::Category::Other) => "other",
        _ => "?",
    }
}

/// Parses a category name as written on the command line.
pub fn parse_category(s: &str) -> Result<i32> {
    for c in 1..=8 {
        if category_name(c) == s.to_ascii_lowercase().replace('_', "-") {
            return Ok(c);
        }
    }
    bail!(
        "unknown category {s:?}: use one of smuggling, trade-fraud, counterfeit, intellectual-property, prohibited-goods, food-safety, poor-quality-goods, other"
    )
}

fn print_entry(e: &pb::StoredEntry, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
        return Ok(());
    }
    let Some(body) = &e.body else { return Ok(()) };
    let when = time_str(body.created_unix_ms);
    match &body.payload {
        Some(Payload::Alert(a)) => {
            let province = a
                .location
                .as_ref()
                .map(|l| l.province.as_str())
                .unwrap_or("");
            println!(
                "#{:<6} {when}  {}/{:<5} {:<13} {:<8} tỉnh {province}  {}",
                e.cursor,
                body.author,
                body.index,
                category_name(a.category),
                pb::Severity::try_from(a.severity)
                    .map(|s| s
                        .as_str_name()
                        .trim_start_matches("SEVERITY_")
                        .to_lowercase())
                    .unwrap_or_default(),
                a.title
            );
        }
        Some(Payload::Receipt(r)) if r.more.is_empty() => println!(
            "#{:<6} {when}  {}/{:<5} receipt: received {}/{} ({})",
            e.cursor,
            body.author,
            body.index,
            r.author,
            r.index,
            hex::encode(&r.entry_id)
        ),
        Some(Payload::Receipt(r)) => println!(
            "#{:<6} {when}  {}/{:<5} receipt: received {} entries of {}, {} to {}",
            e.cursor,
            body.author,
            body.index,
            1 + r.more.len(),
            r.author,
            r.index,
            r.more.last().map_or(r.index, |m| m.index)
        ),
        Some(other) => println!(
            "#{:<6} {when}  {}/{:<5} {}{}",
            e.cursor,
            body.author,
            body.index,
            describe(other),
            if e.retracted_by.is_empty() {
                ""
            } else {
                "  [retracted]"
            }
        ),
        None => println!(
            "#{:<6} {when}  {}/{} (empty)",
            e.cursor, body.author, body.index
        ),
    }
    Ok(())
}

/// One line about a coordination entry.
fn describe(p: &Payload) -> String {
    let short = |b: &[u8]| hex::encode(&b[..b.len().min(8)]);
    match p {
        Payload::CaseEvent(ev) => {
            let kind = lienthong_core::coordination::case::event_kind(ev);
            if ev.case_id.is_empty() {
                match &ev.event {
                    Some(pb::case_event::Event::Opened(o)) => format!("case opened: {}", o.title),
                    _ => format!("case {kind}"),
                }
            } else {
                format!("case {} {kind}", short(&ev.case_id))
            }
        }
        Payload::AssistanceRequest(r) => format!(
            "assistance request to {}: {}",
            r.to,
            first_line(&r.question)
        ),
        Payload::AssistanceAnswer(a) => format!("assistance answer to {}", short(&a.request_id)),
        Payload::Escalation(x) => format!(
            "escalation: request {} overdue at {}",
            short(&x.request_id),
            x.overdue_member
        ),
        Payload::Inspection(i) => match &i.event {
            Some(pb::inspection_event::Event::Plan(p)) => format!("inspection plan: {}", p.title),
            Some(pb::inspection_event::Event::Acceptance(a)) => format!(
                "inspection {} {}",
                short(&i.plan_id),
                if a.accept { "accepted" } else { "declined" }
            ),
            Some(pb::inspection_event::Event::Report(_)) => {
                format!("inspection {} report", short(&i.plan_id))
            }
            None => "inspection (empty)".into(),
        },
        Payload::Meeting(m) => format!("meeting: {}", m.title),
        Payload::Retraction(r) => format!(
            "retraction of {}: {}",
            short(&r.target),
            first_line(&r.reason)
        ),
        Payload::Alert(_) | Payload::Receipt(_) => String::new(),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

pub fn time_str(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|_| ms.to_string())
}

pub async fn get(cfg: &Config, key: pb::get_entry_request::Key, json: bool) -> Result<()> {
    let mut client = AlertsClient::new(connect(cfg).await?);
    let e = client
        .get(pb::GetEntryRequest { key: Some(key) })
        .await
        .map_err(|s| anyhow::anyhow!(explain(&s)))?
        .into_inner();
    if json {
        print_entry(&e, true)
    } else {
        println!("{}", serde_json::to_string_pretty(&e.body)?);
        println!(
            "entry id {}  cursor {}  verification {:?}",
            hex::encode(&e.entry_id),
            e.cursor,
            pb::Verification::try_from(e.verification).unwrap_or_default()
        );
        Ok(())
    }
}

pub async fn list(cfg: &Config, q: pb::QueryRequest, all_pages: bool, json: bool) -> Result<()> {
    let mut client = AlertsClient::new(connect(cfg).await?);
    let mut q = q;
    let mut n = 0usize;
    loop {
        let page = client
            .query(q.clone())
            .await
            .map_err(|s| anyhow::anyhow!(explain(&s)))?
            .into_inner();
        for e in &page.entries {
            print_entry(e, json)?;
        }
        n += page.entries.len();
        if page.next_page_token.is_empty() || !all_pages {
            if !json {
                eprintln!(
                    "{n} entr{}{}",
                    if n == 1 { "y" } else { "ies" },
                    if page.next_page_token.is_empty() {
                        ""
                    } else {
                        " (more: use --all)"
                    }
                );
            }
            return Ok(());
        }
        q.page_token = page.next_page_token;
    }
}

/// Checks the node's feed as an auditor would, trusting only the member's
/// verifier key: the checkpoint signature, every entry's signature, every
/// inclusion proof against the checkpoint and, if a previous checkpoint is
/// given, consistency with it.
pub async fn verify_feed(
    cfg: &Config,
    vkey: &str,
    chain: Option<&lienthong_core::manifest::ManifestChain>,
    previous: Option<&Path>,
    save: Option<&Path>,
) -> Result<()> {
    let (name, _, key) = lienthong_log::parse_vkey(vkey).context("--vkey")?;
    let member = name.rsplit('/').next().unwrap_or_default().to_owned();
    // With the manifest chain, the trusted vkey must be one of the member's
    // keys there; entries use the key of their version, checkpoints the
    // key in force.
    let current = match chain {
        None => key,
        Some(c) => {
            anyhow::ensure!(
                c.keys_of(&member).contains(&key),
                "--vkey is not a key member {member} has held in the manifest"
            );
            *c.current()
                .member_key(&member)
                .with_context(|| format!("member {member} is not in the manifest in force"))?
        }
    };
    let vkey_now = lienthong_log::vkey_string(&name, &current);
    let vkey = vkey_now.as_str();
    let key_for = |env: &[u8]| -> ed25519_dalek::VerifyingKey {
        chain
            .zip(lienthong_core::entry::decode_envelope(env).ok())
            .and_then(|(c, (_, body))| c.key_at(&member, body.manifest_version).copied())
            .unwrap_or(key)
    };
    let mut audit = AuditClient::new(connect(cfg).await?);
    let cp = audit
        .get_checkpoint(pb::GetCheckpointRequest::default())
        .await
        .map_err(|s| anyhow::anyhow!(explain(&s)))?
        .into_inner();
    let checkpoint = lienthong_log::verify_checkpoint(cp.signed_note.as_bytes(), vkey)
        .context("checkpoint signature")?;
    println!(
        "checkpoint {} size {} root {} — signature OK",
        checkpoint.origin(),
        checkpoint.size(),
        hex::encode(checkpoint.root().0)
    );
    let size = checkpoint.size();
    let mut start = 0u64;
    let mut leaves = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while start < size {
        let got = audit
            .get_entries(pb::GetEntriesRequest { start, end: size })
            .await
            .map_err(|s| anyhow::anyhow!(explain(&s)))?
            .into_inner();
        if got.envelopes.is_empty() {
            bail!("node returned no entries from {start}");
        }
        for env in got.envelopes {
            let e = lienthong_core::entry::verify_envelope(&env, &member, &key_for(&env))
                .with_context(|| format!("entry {start}"))?;
            if e.index() != start {
                bail!("entry at position {start} says it is index {}", e.index());
            }
            leaves.push(lienthong_log::Hash(e.id().0));
            start += 1;
        }
    }
    println!("{size} entries — every signature OK");
    // Root recomputed from the entries themselves, then per-entry proofs.
    let mut mem = lienthong_log::MemoryHashStore::new();
    for l in &leaves {
        mem.append(*l)?;
    }
    if mem.root()? != checkpoint.root() {
        bail!("the entries do not hash to the checkpoint's root");
    }
    for (i, leaf) in leaves.iter().enumerate() {
        let p = audit
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                index: i as u64,
                tree_size: size,
            })
            .await
            .map_err(|s| anyhow::anyhow!(explain(&s)))?
            .into_inner();
        let hashes = to_hashes(&p.hashes)?;
        lienthong_log::verify_inclusion(i as u64, size, *leaf, &hashes, checkpoint.root())
            .with_context(|| format!("inclusion proof of entry {i}"))?;
    }
    println!("root recomputed from the entries matches; {size} inclusion proofs OK");
    if let Some(prev) = previous {
        let text = std::fs::read(prev).with_context(|| format!("reading {}", prev.display()))?;
        let old = lienthong_log::verify_checkpoint(&text, vkey).context("previous checkpoint")?;
        if old.size() > size {
            bail!(
                "the node's checkpoint ({size}) is older than the one saved ({})",
                old.size()
            );
        }
        if old.size() > 0 && old.size() < size {
            let p = audit
                .get_consistency_proof(pb::GetConsistencyProofRequest {
                    old_size: old.size(),
                    new_size: size,
                })
                .await
                .map_err(|s| anyhow::anyhow!(explain(&s)))?
                .into_inner();
            lienthong_log::verify_consistency(
                old.size(),
                old.root(),
                size,
                checkpoint.root(),
                &to_hashes(&p.hashes)?,
            )
            .context("consistency with the previous checkpoint")?;
        } else if old.size() == size && old.root() != checkpoint.root() {
            bail!("two different checkpoints of size {size}: the node equivocated");
        }
        println!(
            "consistent with the earlier checkpoint of size {} — the feed only grew",
            old.size()
        );
    }
    if let Some(s) = save {
        std::fs::write(s, &cp.signed_note)?;
    }
    println!("VERIFIED");
    Ok(())
}

fn to_hashes(v: &[Vec<u8>]) -> Result<Vec<lienthong_log::Hash>> {
    v.iter()
        .map(|h| {
            Ok(lienthong_log::Hash(h.as_slice().try_into().map_err(
                |_| anyhow::anyhow!("proof hash of {} bytes", h.len()),
            )?))
        })
        .collect()
}

/// Prints the node's status (and, with `evidence`, every evidence record);
/// returns how many equivocation records it holds.
pub async fn status(cfg: &Config, json: bool, evidence: bool) -> Result<u64> {
    let mut audit = AuditClient::new(connect(cfg).await?);
    let s = audit
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!(explain(&s)))?
        .into_inner();
    let mut records = Vec::new();
    if evidence {
        let mut after = 0;
        loop {
            let page = audit
                .list_evidence(pb::ListEvidenceRequest {
                    after_id: after,
                    limit: 1000,
                })
                .await
                .map_err(|s| anyhow::anyhow!(explain(&s)))?
                .into_inner()
                .evidence;
            let Some(last) = page.last() else { break };
            after = last.id;
            records.extend(page);
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "status": s,
                "evidence": records,
            }))?
        );
        return Ok(s.equivocations);
    }
    println!(
        "member {} of {}: manifest version {} ({})",
        s.member,
        if s.federation.is_empty() {
            "no federation"
        } else {
            &s.federation
        },
        s.manifest_version,
        hex::encode(&s.manifest_hash).get(..16).unwrap_or("-")
    );
    let newest_cosigned = if s.cosigned_size != s.checkpoint_size && s.cosigned_size > 0 {
        format!(
            "; newest cosigned: checkpoint {} by {} member(s), asked every checkpoint.cosign_interval_ms",
            s.cosigned_size, s.cosigned_by
        )
    } else {
        String::new()
    };
    println!(
        "feed: {} entries, checkpoint {} cosigned by {} member(s){newest_cosigned}",
        s.feed_size, s.checkpoint_size, s.cosignatures
    );
    if !s.writes_refused.is_empty() {
        println!("WRITES REFUSED: {}", s.writes_refused);
    }
    if !s.peers.is_empty() {
        println!(
            "{:<6} {:<14} {:<10} {:>10} {:>11} {:>10} {:>9} {:>8} {:>9}  last error",
            "peer",
            "name",
            "stream",
            "next idx",
            "checkpoint",
            "witnessed",
            "cosigned",
            "refused",
            "clock"
        );
        for p in &s.peers {
            println!(
                "{:<6} {:<14} {:<10} {:>10} {:>11} {:>10} {:>9} {:>8} {:>9}  {}",
                p.member,
                p.name,
                if p.connected { "connected" } else { "down" },
                p.replication_cursor,
                p.checkpoint_size,
                p.witnessed_size,
                if p.cosigned_ours { "yes" } else { "no" },
                p.refused,
                p.clock_offset_ms
                    .map_or_else(|| "-".to_owned(), |o| format!("{:+.1}s", o as f64 / 1000.0)),
                p.last_error
            );
        }
        for p in s.peers.iter().filter(|p| !p.refused_by_reason.is_empty()) {
            let reasons: Vec<String> = p
                .refused_by_reason
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            println!("refused from {}: {}", p.member, reasons.join(", "));
        }
    }
    println!(
        "evidence: {} record(s), {} of equivocation",
        s.evidence, s.equivocations
    );
    for e in &records {
        println!(
            "  #{} {:?} by {} (from {}, {}): {}",
            e.id,
            e.kind(),
            e.member,
            e.received_from,
            time_str(e.observed_unix_ms),
            e.reason
        );
    }
    Ok(s.equivocations)
}

/// `YYYY-MM-DD` (midnight UTC) or Unix milliseconds.
pub fn parse_time(s: &str) -> Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad =
        || anyhow::anyhow!("{s:?} is not a date: write YYYY-MM-DD (UTC) or Unix milliseconds");
    let mut parts = s
        .splitn(3, '-')
        .map(|p| p.parse::<i32>().map_err(|_| bad()));
    let (y, m, d) = match (parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(m), Some(d)) => (y?, m?, d?),
        _ => return Err(bad()),
    };
    let month = u8::try_from(m)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(bad)?;
    let date = time::Date::from_calendar_date(y, month, u8::try_from(d).map_err(|_| bad())?)
        .map_err(|_| bad())?;
    Ok(i64::try_from(
        date.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000,
    )?)
}

/// Streams the node's audit bundle into `out` (via a temporary file, so a
/// failed export never leaves a truncated bundle under the final name).
pub async fn export(cfg: &Config, req: pb::ExportBundleRequest, out: &Path) -> Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let mut audit = AuditClient::new(connect(cfg).await?);
    let mut stream = audit
        .export_bundle(req)
        .await
        .map_err(|s| anyhow::anyhow!(explain(&s)))?
        .into_inner();
    let tmp = out.with_extension("partial");
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut bytes = 0u64;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!(explain(&s)))?
    {
        bytes += chunk.data.len() as u64;
        f.write_all(&chunk.data).await?;
    }
    f.sync_all().await?;
    tokio::fs::rename(&tmp, out).await?;
    eprintln!("wrote {} ({bytes} bytes)", out.display());
    Ok(())
}
