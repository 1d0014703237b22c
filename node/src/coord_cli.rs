//! The CLI side of coordination: `case`, `assist`, `inspection`, `meeting`,
//! `retract`, `correct` and `report`. Inputs are proto3 JSON files (as for
//! `alert submit`); ids are given as 64 hex characters on the command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use lienthong_core::proto::{self as pb, alerts_client::AlertsClient, cases_client::CasesClient};
use tonic::transport::Channel;

use crate::client::{connect, explain, parse_time};
use crate::config;

#[derive(Subcommand)]
pub enum CaseCommand {
    /// Record one case event from a JSON file (a CaseEvent in proto3 JSON):
    /// `opened` starts a case; any other event needs --case.
    #[command(
        after_help = "Examples:\n  lienthong case record -f open.json\n  lienthong case record -f seizure.json --case 3f1c…\n\nopen.json:\n  {\"reference\": \"ls-case-1\", \"opened\": {\"title\": \"Mỹ phẩm giả\", \"category\": \"CATEGORY_COUNTERFEIT\", \"invite\": [\"24\"]}}"
    )]
    Record {
        #[arg(
            long,
            short = 'c',
            env = "LIENTHONG_CONFIG",
            default_value = "lienthong.toml"
        )]
        config: PathBuf,
        /// JSON file, or - for standard input.
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// The case (64 hex characters); overrides `caseId` in the file.
        #[arg(long = "case")]
        case_id: Option<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a case's state and every event, applied or not.
    Show {
        #[arg(
            long,
            short = 'c',
            env = "LIENTHONG_CONFIG",
            default_value = "lienthong.toml"
        )]
        config: PathBuf,
        /// The case id (64 hex characters).
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// List cases, newest first.
    List {
        #[arg(
            long,
            short = 'c',
            env = "LIENTHONG_CONFIG",
            default_value = "lienthong.toml"
        )]
        config: PathBuf,
        /// open, handover-pending, transferred, closed (repeatable).
        #[arg(long = "status")]
        statuses: Vec<String>,
        /// Cases this province leads or is a member of.
        #[arg(long)]
        province: Option<String>,
        /// Subject identifier: tax code, plate, citizen id or HS code.
        #[arg(long)]
        subject: Option<String>,
        /// Words to find, with or without diacritics.
        #[arg(long)]
        text: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the case's state now and at every change, until Ctrl-C.
    Watch {
        #[arg(
            long,
            short = 'c',
            env = "LIENTHONG_CONFIG",
            default_value = "lienthong.toml"
        )]
        config: PathBuf,
        /// The case id (64 hex characters).
        id: String,
        /// Stop after this many states.
        #[arg(long)]
        count: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum AssistCommand {
    /// Ask another province to verify something (an AssistanceRequest in
    /// proto3 JSON).
    #[command(
        after_help = "request.json:\n  {\"reference\": \"ls-req-1\", \"to\": \"24\", \"topic\": \"ASSISTANCE_TOPIC_BUSINESS\",\n   \"question\": \"Xác minh địa chỉ kinh doanh\", \"subjects\": [{\"business\": {\"taxCode\": \"2300123456\"}}]}"
    )]
    Request {
        #[arg(
            long,
            short = 'c',
            env = "LIENTHONG_CONFIG",
            default_value = "lienthong.toml"
        )]
        config: PathBuf,
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// The case it is for (64 hex characters).
        #[arg(long = "case")]
        case_id: Option<String>,
        /// Due in this many seconds (earlier than the agreement's deadline).
        #[arg(long)]
        due_in_seconds: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Answer a request addressed to this province (an AssistanceAnswer).
    Answer {
        #[arg(
            long,
            short = 'c',
            env = "LIENTHONG_CONFIG",
            default_value = "lienthong.toml"
        )]
        config: PathBuf,
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// The request (64 hex characters); overrides `requestId`.
        #[arg(long)]
        request: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Requests sent or received, with their status.
    List {
        #[arg(
            long,
            short = 'c',
            env = "LIENTHONG_CONFIG",
            default_value = "lienthong.toml"
        )]
        config: PathBuf,
        /// sent or received (default both).
        #[arg(long)]
        direction: Option<String>,
        /// open, overdue, answered, answered-late (repeatable).
        #[arg(long = "status")]
        statuses: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum InspectionCommand {
    /// Record a plan, an acceptance or a report (an InspectionEvent).
    Record {
        #[arg(
            long,
            short = 'c',
            env = "LIENTHONG_CONFIG",
            default_value = "lienthong.toml"
        )]
        config: PathBuf,
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// The plan (64 hex characters); overrides `planId`.
        #[arg(long)]
        plan: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a plan's state.
    Show {
        #[arg(
            long,
            short = 'c',
            env = "LIENTHONG_CONFIG",
            default_value = "lienthong.toml"
        )]
        config: PathBuf,
        id: String,
        #[arg(long)]
        json: bool,
    },
}

fn hex32(what: &str, s: &str) -> Result<Vec<u8>> {
    let b = hex::decode(s.trim()).with_context(|| format!("{what} {s:?} is not hexadecimal"))?;
    if b.len() != 32 {
        bail!(
            "{what} must be 64 hex characters (32 bytes), got {}",
            b.len()
        );
    }
    Ok(b)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a {what} in proto3 JSON", path.display()))
}

async fn channel(config: &Path) -> Result<Channel> {
    connect(&config::load(config, false)?).await
}

fn fail(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("refused: {}", explain(&s))
}

/// `CASE_STATUS_HANDOVER_PENDING` → `handover-pending`: the form the CLI
/// prints and accepts.
fn label(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix)
        .to_lowercase()
        .replace('_', "-")
}

/// The inverse of [`label`] for a status list given on the command line.
fn parse_labels(
    given: &[String],
    prefix: &str,
    from_name: impl Fn(&str) -> Option<i32>,
    choices: &str,
) -> Result<Vec<i32>> {
    given
        .iter()
        .map(|s| {
            from_name(&format!("{prefix}{}", s.to_uppercase().replace('-', "_")))
                .with_context(|| format!("unknown status {s:?}: use {choices}"))
        })
        .collect()
}

fn status_name(s: i32) -> String {
    pb::CaseStatus::try_from(s)
        .map(|x| label(x.as_str_name(), "CASE_STATUS_"))
        .unwrap_or_else(|_| s.to_string())
}

fn vnd(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    format!("{out} đ")
}

fn print_case(s: &pb::CaseState, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
        return Ok(());
    }
    println!("case {}", hex::encode(&s.case_id));
    if !s.known {
        println!("  (this node does not hold the opening event)");
    }
    println!("  title     {}", s.title);
    println!(
        "  status    {}   lead {}   members [{}]   invited [{}]   declined [{}]{}",
        status_name(s.status),
        s.lead,
        s.members.join(" "),
        s.invited.join(" "),
        s.declined.join(" "),
        if s.handover_to.is_empty() {
            String::new()
        } else {
            format!("   handover to {}", s.handover_to)
        }
    );
    println!(
        "  seized    {} in {} record(s); fines {} in {} decision(s); {} inspection(s)",
        vnd(s.seized_value_vnd),
        s.seizures,
        vnd(s.fines_vnd),
        s.decisions,
        s.inspections
    );
    for st in &s.steps {
        let mark = if st.applied {
            "✓"
        } else if st.retracted {
            "⨯ retracted"
        } else {
            "✗"
        };
        println!(
            "  {} {} {:<18} {} {}",
            crate::client::time_str(st.created_unix_ms),
            st.author,
            st.kind,
            mark,
            st.conflict
        );
    }
    if s.conflicts > 0 {
        println!(
            "  {} event(s) not applied (conflicts), listed above",
            s.conflicts
        );
    }
    Ok(())
}

pub async fn case(cmd: CaseCommand) -> Result<()> {
    match cmd {
        CaseCommand::Record {
            config,
            file,
            case_id,
            json,
        } => {
            let mut ev: pb::CaseEvent = read_json(&file, "CaseEvent")?;
            if let Some(c) = case_id {
                ev.case_id = hex32("--case", &c)?;
            }
            let mut client = CasesClient::new(channel(&config).await?);
            let r = client
                .record_case_event(ev)
                .await
                .map_err(fail)?
                .into_inner();
            if json {
                println!("{}", serde_json::to_string(&r)?);
                return Ok(());
            }
            print_written(&r.written.unwrap_or_default(), false)?;
            if let Some(s) = &r.state {
                print_case(s, false)?;
            }
            Ok(())
        }
        CaseCommand::Show { config, id, json } => {
            let mut client = CasesClient::new(channel(&config).await?);
            let s = client
                .get_case(pb::GetCaseRequest {
                    case_id: hex32("case id", &id)?,
                })
                .await
                .map_err(fail)?
                .into_inner();
            print_case(&s, json)
        }
        CaseCommand::List {
            config,
            statuses,
            province,
            subject,
            text,
            json,
        } => {
            let statuses = parse_labels(
                &statuses,
                "CASE_STATUS_",
                |n| pb::CaseStatus::from_str_name(n).map(|x| x as i32),
                "open, handover-pending, transferred or closed",
            )?;
            let mut client = CasesClient::new(channel(&config).await?);
            let mut token = String::new();
            loop {
                let r = client
                    .list_cases(pb::ListCasesRequest {
                        statuses: statuses.clone(),
                        province: province.clone().unwrap_or_default(),
                        subject_id: subject.clone().unwrap_or_default(),
                        text: text.clone().unwrap_or_default(),
                        page_token: token,
                        ..Default::default()
                    })
                    .await
                    .map_err(fail)?
                    .into_inner();
                for s in &r.cases {
                    if json {
                        println!("{}", serde_json::to_string(s)?);
                    } else {
                        println!(
                            "{}  {:<16} lead {}  {}",
                            hex::encode(&s.case_id),
                            status_name(s.status),
                            s.lead,
                            s.title
                        );
                    }
                }
                if r.next_page_token.is_empty() {
                    return Ok(());
                }
                token = r.next_page_token;
            }
        }
        CaseCommand::Watch {
            config,
            id,
            count,
            json,
        } => {
            let mut client = CasesClient::new(channel(&config).await?);
            let mut stream = client
                .watch_case(pb::GetCaseRequest {
                    case_id: hex32("case id", &id)?,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let mut n = 0;
            while let Some(s) = stream.message().await.map_err(fail)? {
                print_case(&s, json)?;
                n += 1;
                if count.is_some_and(|c| n >= c) {
                    break;
                }
            }
            Ok(())
        }
    }
}

fn assistance_status_name(s: i32) -> String {
    pb::AssistanceStatus::try_from(s)
        .map(|x| label(x.as_str_name(), "ASSISTANCE_STATUS_"))
        .unwrap_or_else(|_| s.to_string())
}

fn print_written(w: &pb::WrittenEntry, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(w)?);
    } else {
        println!(
            "{} entry {} at feed index {}",
            if w.duplicate {
                "already stored:"
            } else {
                "stored:"
            },
            hex::encode(&w.entry_id),
            w.index
        );
    }
    Ok(())
}

pub async fn assist(cmd: AssistCommand) -> Result<()> {
    match cmd {
        AssistCommand::Request {
            config,
            file,
            case_id,
            due_in_seconds,
            json,
        } => {
            let mut r: pb::AssistanceRequest = read_json(&file, "AssistanceRequest")?;
            if let Some(c) = case_id {
                r.case_id = hex32("--case", &c)?;
            }
            if let Some(s) = due_in_seconds {
                r.due_unix_ms = crate::api::now_unix_ms() + s * 1000;
            }
            let mut client = CasesClient::new(channel(&config).await?);
            let w = client
                .request_assistance(r)
                .await
                .map_err(fail)?
                .into_inner();
            print_written(&w, json)
        }
        AssistCommand::Answer {
            config,
            file,
            request,
            json,
        } => {
            let mut a: pb::AssistanceAnswer = read_json(&file, "AssistanceAnswer")?;
            if let Some(r) = request {
                a.request_id = hex32("--request", &r)?;
            }
            let mut client = CasesClient::new(channel(&config).await?);
            let w = client
                .answer_assistance(a)
                .await
                .map_err(fail)?
                .into_inner();
            print_written(&w, json)
        }
        AssistCommand::List {
            config,
            direction,
            statuses,
            json,
        } => {
            let statuses = parse_labels(
                &statuses,
                "ASSISTANCE_STATUS_",
                |n| pb::AssistanceStatus::from_str_name(n).map(|x| x as i32),
                "open, overdue, answered or answered-late",
            )?;
            let mut client = CasesClient::new(channel(&config).await?);
            let mut token = String::new();
            loop {
                let r = client
                    .list_assistance(pb::ListAssistanceRequest {
                        direction: direction.clone().unwrap_or_default(),
                        statuses: statuses.clone(),
                        page_token: token,
                        ..Default::default()
                    })
                    .await
                    .map_err(fail)?
                    .into_inner();
                for s in &r.requests {
                    if json {
                        println!("{}", serde_json::to_string(s)?);
                        continue;
                    }
                    let req = s.request.clone().unwrap_or_default();
                    println!(
                        "{}  {} → {}  {:<13} due {}{}{}  {}",
                        hex::encode(&s.request_id),
                        s.from,
                        req.to,
                        assistance_status_name(s.status),
                        crate::client::time_str(req.due_unix_ms),
                        if s.answered_unix_ms > 0 {
                            format!(", answered {}", crate::client::time_str(s.answered_unix_ms))
                        } else {
                            String::new()
                        },
                        if s.escalation_ids.is_empty() {
                            ""
                        } else {
                            ", escalated"
                        },
                        req.question.lines().next().unwrap_or("")
                    );
                }
                if r.next_page_token.is_empty() {
                    return Ok(());
                }
                token = r.next_page_token;
            }
        }
    }
}

pub async fn inspection(cmd: InspectionCommand) -> Result<()> {
    match cmd {
        InspectionCommand::Record {
            config,
            file,
            plan,
            json,
        } => {
            let mut ev: pb::InspectionEvent = read_json(&file, "InspectionEvent")?;
            if let Some(p) = plan {
                ev.plan_id = hex32("--plan", &p)?;
            }
            let mut client = CasesClient::new(channel(&config).await?);
            let r = client
                .record_inspection_event(ev)
                .await
                .map_err(fail)?
                .into_inner();
            if json {
                println!("{}", serde_json::to_string(&r)?);
                return Ok(());
            }
            print_written(&r.written.unwrap_or_default(), false)?;
            if let Some(s) = &r.state {
                print_inspection(s);
            }
            Ok(())
        }
        InspectionCommand::Show { config, id, json } => {
            let mut client = CasesClient::new(channel(&config).await?);
            let s = client
                .get_inspection(pb::GetInspectionRequest {
                    plan_id: hex32("plan id", &id)?,
                })
                .await
                .map_err(fail)?
                .into_inner();
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                print_inspection(&s);
            }
            Ok(())
        }
    }
}

fn print_inspection(s: &pb::InspectionState) {
    let title = s.plan.as_ref().map(|p| p.title.as_str()).unwrap_or("");
    println!(
        "plan {} by {}: {title}",
        hex::encode(&s.plan_id),
        s.planned_by
    );
    for p in &s.participants {
        println!(
            "  {}  {}  {} report(s)",
            p.province,
            match (p.answered, p.accepted) {
                (false, _) => "not answered",
                (true, true) => "accepted",
                (true, false) => "declined",
            },
            p.reports.len()
        );
    }
    println!(
        "  inspected {}, violations {}, fines {}, seized {}",
        s.inspected,
        s.violations,
        vnd(s.fines_vnd),
        vnd(s.seized_value_vnd)
    );
    for r in &s.refused {
        println!("  refused: {r}");
    }
}

pub async fn meeting(config: &Path, file: &Path, json: bool) -> Result<()> {
    let m: pb::Meeting = read_json(file, "Meeting")?;
    let mut client = CasesClient::new(channel(config).await?);
    let w = client.record_meeting(m).await.map_err(fail)?.into_inner();
    print_written(&w, json)
}

pub async fn retract(config: &Path, id: &str, reason: &str, json: bool) -> Result<()> {
    let mut client = AlertsClient::new(channel(config).await?);
    let w = client
        .retract(pb::RetractRequest {
            entry_id: hex32("entry id", id)?,
            reason: reason.to_owned(),
        })
        .await
        .map_err(fail)?
        .into_inner();
    print_written(&w, json)
}

pub async fn correct(config: &Path, id: &str, file: &Path, reason: &str, json: bool) -> Result<()> {
    let alert: pb::Alert = read_json(file, "Alert")?;
    let mut client = AlertsClient::new(channel(config).await?);
    let r = client
        .correct(pb::CorrectRequest {
            entry_id: hex32("entry id", id)?,
            alert: Some(alert),
            reason: reason.to_owned(),
        })
        .await
        .map_err(fail)?
        .into_inner();
    if json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    print_written(&r.replacement.unwrap_or_default(), false)?;
    print_written(&r.retraction.unwrap_or_default(), false)
}

/// `lienthong report`: a table or CSV.
pub async fn report(config: &Path, from: &str, to: &str, csv: bool, json: bool) -> Result<()> {
    let mut client = CasesClient::new(channel(config).await?);
    let r = client
        .report(pb::ReportRequest {
            from_unix_ms: parse_time(from)?,
            to_unix_ms: parse_time(to)?,
        })
        .await
        .map_err(fail)?
        .into_inner();
    if json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let total = r.total.clone().unwrap_or_default();
    let rows: Vec<&pb::ProvinceFigures> =
        r.provinces.iter().chain(std::iter::once(&total)).collect();
    let name = |f: &pb::ProvinceFigures| {
        if f.province.is_empty() {
            "total".to_owned()
        } else {
            format!(
                "{} {}",
                f.province,
                lienthong_core::provinces::province_name(&f.province).unwrap_or("")
            )
        }
    };
    const HEAD: [&str; 13] = [
        "province",
        "alerts",
        "cases_opened",
        "cases_closed",
        "assist_sent",
        "assist_received",
        "answered_in_time",
        "answered_late",
        "overdue",
        "seized_vnd",
        "fines_vnd",
        "inspection_reports",
        "meetings",
    ];
    let cells = |f: &pb::ProvinceFigures| -> Vec<String> {
        vec![
            name(f),
            f.alerts.to_string(),
            f.cases_opened.to_string(),
            f.cases_closed.to_string(),
            f.assistance_sent.to_string(),
            f.assistance_received.to_string(),
            f.answered_in_time.to_string(),
            f.answered_late.to_string(),
            f.overdue.to_string(),
            f.seized_value_vnd.to_string(),
            f.fines_vnd.to_string(),
            f.inspection_reports.to_string(),
            f.meetings.to_string(),
        ]
    };
    if csv {
        let quote = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_owned()
            }
        };
        println!("{}", HEAD.join(","));
        for f in rows {
            println!(
                "{}",
                cells(f)
                    .iter()
                    .map(|c| quote(c))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        return Ok(());
    }
    println!(
        "Report {} – {} computed by {} from the entries it holds ({} retracted left out)",
        crate::client::time_str(r.from_unix_ms),
        crate::client::time_str(r.to_unix_ms),
        r.computed_by,
        r.retracted
    );
    let table: Vec<Vec<String>> = std::iter::once(HEAD.iter().map(|h| h.to_string()).collect())
        .chain(rows.iter().map(|f| cells(f)))
        .collect();
    let widths: Vec<usize> = (0..HEAD.len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i] - c.chars().count();
                if i == 0 {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect();
        println!("{}", line.join("  "));
    }
    if !r.categories.is_empty() {
        println!();
        println!("by category: alerts / cases opened / cases closed / seized");
        for c in &r.categories {
            println!(
                "  {:<22} {:>5} {:>5} {:>5}  {}",
                pb::Category::try_from(c.category)
                    .map(|x| x
                        .as_str_name()
                        .trim_start_matches("CATEGORY_")
                        .to_lowercase())
                    .unwrap_or_else(|_| "unknown".into()),
                c.alerts,
                c.cases_opened,
                c.cases_closed,
                vnd(c.seized_value_vnd)
            );
        }
    }
    Ok(())
}
