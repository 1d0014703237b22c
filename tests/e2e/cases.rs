//! Issue 5: cases handled jointly by several provinces, assistance requests
//! with deadlines, coordinated inspections, meetings, statistics and
//! retraction, each step a signed entry exchanged between real nodes.

use std::time::{Duration, Instant};

use lienthong_proto::v1::{self as pb, case_event::Event, get_entry_request::Key};
use lienthong_tests::{Node, federation, run_ok, sample_alert};
use tonic::Code;

/// Every entry goes everywhere; overdue requests are escalated to Hà Nội.
const AGREEMENT: &str = r#"
[agreement]
[agreement.coordination]
assistance_deadline_hours = 48
escalate_to = ["01"]

[[agreement.rules]]
name = "all"
audience = "all"
handling = "H1"
"#;

const THREE: [(&str, &str); 3] = [("20", "Lạng Sơn"), ("24", "Bắc Ninh"), ("01", "Hà Nội")];

/// Polls `f` until it returns `Some`, for at most 20 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn state(node: &Node, case_id: &[u8]) -> anyhow::Result<Option<pb::CaseState>> {
    match node
        .cases()
        .await?
        .get_case(pb::GetCaseRequest {
            case_id: case_id.to_vec(),
        })
        .await
    {
        Ok(s) => Ok(Some(s.into_inner())),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(s.into()),
    }
}

/// Waits until `node` folds the case with at least `steps` events.
async fn steps_at(node: &Node, case_id: &[u8], steps: usize) -> anyhow::Result<pb::CaseState> {
    eventually(
        &format!("{} to hold {steps} events", node.member),
        || async {
            Ok(state(node, case_id)
                .await?
                .filter(|s| s.steps.len() >= steps))
        },
    )
    .await
}

fn ev(reference: &str, case_id: &[u8], event: Event) -> pb::CaseEvent {
    pb::CaseEvent {
        case_id: case_id.to_vec(),
        reference: reference.into(),
        event: Some(event),
        ..Default::default()
    }
}

fn answer(accept: bool) -> pb::CaseAnswer {
    pb::CaseAnswer {
        accept,
        message: String::new(),
    }
}

async fn record(node: &Node, e: pb::CaseEvent) -> anyhow::Result<pb::CaseEventResponse> {
    Ok(node.cases().await?.record_case_event(e).await?.into_inner())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn seizure(value: u64) -> Event {
    Event::Seizure(pb::SeizureRecord {
        record_number: "45/BB-QLTT".into(),
        seized_unix_ms: now_ms() - 60_000,
        location: Some(pb::Location {
            province: "24".into(),
            commune: "Phường Kinh Bắc".into(),
            address: String::new(),
        }),
        goods: vec![pb::Goods {
            hs_code: "3304.99".into(),
            description: "Kem dưỡng da giả nhãn hiệu".into(),
            quantity: 80.0,
            unit: "thùng".into(),
            estimated_value_vnd: value,
        }],
    })
}

/// What every node must agree on: the state without the fields that
/// are the same by construction.
fn summary(s: &pb::CaseState) -> pb::CaseState {
    pb::CaseState {
        steps: s
            .steps
            .iter()
            .map(|x| pb::CaseStep {
                created_unix_ms: 0,
                ..x.clone()
            })
            .collect(),
        ..s.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_moves_from_alert_to_closure_across_three_provinces() -> anyhow::Result<()> {
    let mut f = federation(&THREE, 3, AGREEMENT)?;
    f.start_all()?;
    let [ls, bn, hn] = [&f.nodes[0], &f.nodes[1], &f.nodes[2]];

    // Lạng Sơn raises the alert and opens a case from it, inviting Bắc Ninh.
    let alert = ls
        .alerts()
        .await?
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert("ls-alert-1")),
        })
        .await?
        .into_inner();
    let opened = record(
        ls,
        ev(
            "ls-case-1",
            &[],
            Event::Opened(pb::CaseOpened {
                title: "Đường dây mỹ phẩm giả Lạng Sơn – Bắc Ninh – Hà Nội".into(),
                summary: "Xe tải 12C-045.67 chở mỹ phẩm giả từ cửa khẩu.".into(),
                category: pb::Category::Counterfeit as i32,
                alert_ids: vec![alert.entry_id.clone()],
                invite: vec!["24".into()],
                subjects: sample_alert("x").subjects,
            }),
        ),
    )
    .await?;
    let case_id = opened.written.as_ref().unwrap().entry_id.clone();
    let s = opened.state.unwrap();
    assert_eq!(
        (s.lead.as_str(), s.invited.clone()),
        ("20", vec!["24".to_owned()])
    );
    assert_eq!(s.status, pb::CaseStatus::Open as i32);

    // Hà Nội is not in the case yet: it holds nothing of it.
    let s = steps_at(bn, &case_id, 1).await?;
    assert!(s.known && s.invited == ["24"]);
    assert!(
        state(hn, &case_id).await?.is_none(),
        "01 is not in the case's circle"
    );

    // Bắc Ninh is watching the case; it accepts the invitation.
    let mut watch = bn
        .cases()
        .await?
        .watch_case(pb::GetCaseRequest {
            case_id: case_id.clone(),
        })
        .await?
        .into_inner();
    let first = watch.message().await?.unwrap();
    assert_eq!(first.steps.len(), 1);
    record(
        bn,
        ev("bn-join", &case_id, Event::InvitationAnswer(answer(true))),
    )
    .await?;
    let next = tokio::time::timeout(Duration::from_secs(20), watch.message())
        .await??
        .unwrap();
    assert_eq!(next.members, ["24"], "the watch shows the update");

    // Both record what they did: an inspection in Bắc Ninh, a seizure.
    steps_at(ls, &case_id, 2).await?;
    record(
        bn,
        ev(
            "bn-insp",
            &case_id,
            Event::InspectionResult(pb::InspectionResult {
                inspected_unix_ms: now_ms() - 3_600_000,
                location: Some(pb::Location {
                    province: "24".into(),
                    ..Default::default()
                }),
                findings: "Kho chứa 80 thùng mỹ phẩm không rõ nguồn gốc".into(),
                violation_found: true,
            }),
        ),
    )
    .await?;
    record(bn, ev("bn-seize", &case_id, seizure(320_000_000))).await?;

    // The lead hands the case over to Hà Nội, which was never in it: the
    // handover carries the history, so Hà Nội folds the same case.
    steps_at(ls, &case_id, 4).await?;
    record(
        ls,
        ev(
            "ls-handover",
            &case_id,
            Event::Handover(pb::CaseHandover {
                to: "01".into(),
                reason: "Đầu mối tiêu thụ tại Hà Nội".into(),
            }),
        ),
    )
    .await?;
    let at_hn = steps_at(hn, &case_id, 5).await?;
    assert_eq!(at_hn.status, pb::CaseStatus::HandoverPending as i32);
    assert_eq!(at_hn.seized_value_vnd, 320_000_000);
    assert_eq!(at_hn.handover_to, "01");

    // Only the province asked may answer; only a member may record.
    let refused = record(hn, ev("hn-seize-early", &case_id, seizure(1))).await;
    let code = refused.unwrap_err().downcast::<tonic::Status>()?.code();
    assert_eq!(code, Code::FailedPrecondition);
    record(
        hn,
        ev("hn-accept", &case_id, Event::HandoverAnswer(answer(true))),
    )
    .await?;
    record(
        hn,
        ev(
            "hn-decision",
            &case_id,
            Event::Decision(pb::AdministrativeDecision {
                decision_number: "112/QĐ-XPHC".into(),
                decided_unix_ms: now_ms() - 1_000,
                violator: Some(pb::Subject {
                    kind: Some(pb::subject::Kind::Business(pb::Business {
                        tax_code: "0101234567".into(),
                        name: "Công ty TNHH Mỹ phẩm Hoa Sen".into(),
                        address: String::new(),
                    })),
                }),
                fine_vnd: 150_000_000,
                measures: "Tịch thu, tiêu hủy hàng giả".into(),
            }),
        ),
    )
    .await?;
    let closed = record(
        hn,
        ev(
            "hn-close",
            &case_id,
            Event::Closure(pb::CaseClosure {
                outcome: pb::CaseOutcome::Sanctioned as i32,
                summary: "Đã xử phạt và tiêu hủy".into(),
            }),
        ),
    )
    .await?
    .state
    .unwrap();
    assert_eq!(closed.status, pb::CaseStatus::Closed as i32);
    assert_eq!(closed.lead, "01");
    assert_eq!(closed.members, ["20", "24"], "the old lead stays a member");
    assert_eq!(closed.conflicts, 0);

    // Every node folds the same state from the same signed events.
    for n in [ls, bn] {
        let s = steps_at(n, &case_id, closed.steps.len()).await?;
        assert_eq!(summary(&s), summary(&closed), "{} differs", n.member);
    }
    // Nothing is recorded after the closure.
    let late = record(bn, ev("bn-after", &case_id, seizure(5))).await;
    assert_eq!(
        late.unwrap_err().downcast::<tonic::Status>()?.code(),
        Code::FailedPrecondition
    );

    // Search: by words without diacritics, by plate, by status.
    for n in [ls, bn, hn] {
        let mut c = n.cases().await?;
        let by_text = c
            .list_cases(pb::ListCasesRequest {
                text: "duong day my pham".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(by_text.cases.len(), 1, "{}", n.member);
        let by_plate = c
            .list_cases(pb::ListCasesRequest {
                subject_id: "12C04567".into(),
                statuses: vec![pb::CaseStatus::Closed as i32],
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(by_plate.cases.len(), 1);
        let open = c
            .list_cases(pb::ListCasesRequest {
                statuses: vec![pb::CaseStatus::Open as i32],
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(open.cases.is_empty());
        // Every kind is searchable by kind, words and creation time.
        let mut a = n.alerts().await?;
        let q = |from: i64, to: i64| pb::QueryRequest {
            kinds: vec![pb::EntryKind::CaseEvent as i32],
            text: "tieu huy".into(),
            created_from_unix_ms: from,
            created_to_unix_ms: to,
            ..Default::default()
        };
        let today = a.query(q(now_ms() - 86_400_000, 0)).await?.into_inner();
        assert_eq!(
            today.entries.len(),
            2,
            "decision and closure at {}",
            n.member
        );
        let before = a.query(q(0, now_ms() - 86_400_000)).await?.into_inner();
        assert!(before.entries.is_empty());
    }
    // The case is provable: every node's bundle verifies, receipts included.
    bundles_verify(&f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_from_two_provinces_resolve_the_same_everywhere() -> anyhow::Result<()> {
    let mut f = federation(&THREE[..2], 2, lienthong_tests::AGREEMENT_ALL)?;
    f.start_all()?;
    let case_id = {
        let [ls, bn] = [&f.nodes[0], &f.nodes[1]];
        let r = record(
            ls,
            ev(
                "c-open",
                &[],
                Event::Opened(pb::CaseOpened {
                    title: "Buôn lậu thuốc lá".into(),
                    category: pb::Category::Smuggling as i32,
                    invite: vec!["24".into()],
                    ..Default::default()
                }),
            ),
        )
        .await?;
        let id = r.written.unwrap().entry_id;
        steps_at(bn, &id, 1).await?;
        record(bn, ev("c-join", &id, Event::InvitationAnswer(answer(true)))).await?;
        steps_at(ls, &id, 2).await?;
        id
    };
    // Partition: Bắc Ninh is down while Lạng Sơn closes the case; then
    // Lạng Sơn is down while Bắc Ninh, not knowing, records a seizure.
    f.nodes[1].stop()?;
    record(
        &f.nodes[0],
        ev(
            "c-close",
            &case_id,
            Event::Closure(pb::CaseClosure {
                outcome: pb::CaseOutcome::NoViolation as i32,
                summary: "Không phát hiện vi phạm".into(),
            }),
        ),
    )
    .await?;
    f.nodes[0].stop()?;
    f.nodes[1].start()?;
    let r = record(&f.nodes[1], ev("c-seize", &case_id, seizure(90_000_000))).await?;
    assert_eq!(
        r.state.unwrap().seized_value_vnd,
        90_000_000,
        "applied as 24 saw the case"
    );
    f.nodes[0].start()?;

    // Reconnected, both fold the same: the close came first, so the
    // seizure is kept, visibly not applied, and names what it lost to.
    let mut states = Vec::new();
    for n in &f.nodes {
        states.push(steps_at(n, &case_id, 4).await?);
    }
    assert_eq!(summary(&states[0]), summary(&states[1]));
    let s = &states[0];
    assert_eq!(s.status, pb::CaseStatus::Closed as i32);
    assert_eq!(s.seized_value_vnd, 0);
    assert_eq!(s.conflicts, 1);
    let lost = s.steps.iter().find(|x| x.kind == "seizure").unwrap();
    assert!(!lost.applied);
    assert!(lost.conflict.contains("concurrent"), "{}", lost.conflict);
    let close = s.steps.iter().find(|x| x.kind == "closure").unwrap();
    assert_eq!(lost.conflicts_with, close.entry_id);
    assert_eq!(s.heads.len(), 2, "two concurrent heads");
    Ok(())
}

async fn list_assistance(node: &Node, direction: &str) -> anyhow::Result<Vec<pb::AssistanceState>> {
    Ok(node
        .cases()
        .await?
        .list_assistance(pb::ListAssistanceRequest {
            direction: direction.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .requests)
}

/// Waits until no node writes any more (receipts of receipts are never
/// written, so this ends) and every feed is checkpointed.
async fn settle(nodes: &[Node]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    loop {
        let mut now = Vec::new();
        for n in nodes {
            let st = n
                .audit()
                .await?
                .get_status(pb::GetStatusRequest {})
                .await?
                .into_inner();
            now.push((st.feed_size, st.checkpoint_size));
        }
        if now == last && now.iter().all(|(f, c)| f == c) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the federation did not settle: {now:?}"
        );
        last = now;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}

/// Once the federation settles, every member's audit bundle verifies
/// together with the others.
async fn bundles_verify(f: &lienthong_tests::Federation) -> anyhow::Result<()> {
    settle(&f.nodes).await?;
    let bundles = f.export_bundles()?;
    let vkey = f.nodes[0].vkey()?.trim().to_owned();
    let (out, r) = f.verify_bundles(&bundles, &vkey)?;
    assert_eq!(r["verdict"], "pass", "{out}");
    Ok(())
}

async fn feed_size(node: &Node) -> anyhow::Result<u64> {
    let st = node
        .audit()
        .await?
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    Ok(st.feed_size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assistance_inspections_meetings_report_and_retraction() -> anyhow::Result<()> {
    let mut f = federation(&THREE, 3, AGREEMENT)?;
    f.start_all()?;
    let [ls, bn, hn] = [&f.nodes[0], &f.nodes[1], &f.nodes[2]];
    let mut ls_cases = ls.cases().await?;

    // Bad input: every problem named, nothing written.
    let before = feed_size(ls).await?;
    let bad = ls_cases
        .request_assistance(pb::AssistanceRequest {
            reference: "bad ref".into(),
            to: "99".into(),
            due_unix_ms: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    for field in [
        "assistance_request.reference",
        "assistance_request.to",
        "assistance_request.topic",
        "assistance_request.question",
        "assistance_request.due_unix_ms",
    ] {
        assert!(
            bad.message().contains(field),
            "{field} in {}",
            bad.message()
        );
    }
    let not_member = ls_cases
        .request_assistance(pb::AssistanceRequest {
            reference: "r-33".into(),
            to: "33".into(),
            topic: pb::AssistanceTopic::Business as i32,
            question: "Xác minh".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        not_member.message().contains("not a member"),
        "{}",
        not_member.message()
    );
    assert_eq!(feed_size(ls).await?, before);

    // One request answered in time, one let run past its deadline.
    let question = |r: &str, due: i64| lienthong_tests::sample_assistance(r, "24", due);
    let on_time = ls_cases
        .request_assistance(question("req-on-time", 0))
        .await?
        .into_inner();
    let late = ls_cases
        .request_assistance(question("req-late", now_ms() + 3_000))
        .await?
        .into_inner();
    let reply = |id: &[u8], r: &str| pb::AssistanceAnswer {
        request_id: id.to_vec(),
        reference: r.into(),
        finding: pb::AssistanceFinding::NotConfirmed as i32,
        answer: "Doanh nghiệp không hoạt động tại địa chỉ đăng ký".into(),
        subjects: vec![],
    };
    // Hà Nội was not asked and holds nothing of the request.
    let wrong = hn
        .cases()
        .await?
        .answer_assistance(reply(&on_time.entry_id, "hn-1"))
        .await;
    assert_eq!(wrong.unwrap_err().code(), Code::NotFound);
    eventually("24 to receive both requests", || async {
        Ok((list_assistance(bn, "received").await?.len() == 2).then_some(()))
    })
    .await?;
    bn.cases()
        .await?
        .answer_assistance(reply(&on_time.entry_id, "bn-1"))
        .await?;

    // The deadline passes: Lạng Sơn escalates, to Bắc Ninh and to Hà Nội.
    let escalated = eventually("the overdue request to be escalated", || async {
        let sent = list_assistance(ls, "sent").await?;
        Ok(sent
            .into_iter()
            .find(|s| s.request_id == late.entry_id && !s.escalation_ids.is_empty()))
    })
    .await?;
    assert_eq!(escalated.status, pb::AssistanceStatus::Overdue as i32);
    let esc_id = escalated.escalation_ids[0].clone();
    for n in [bn, hn] {
        eventually(
            &format!("{} to receive the escalation", n.member),
            || async {
                Ok(n.alerts()
                    .await?
                    .get(pb::GetEntryRequest {
                        key: Some(Key::EntryId(esc_id.clone())),
                    })
                    .await
                    .ok())
            },
        )
        .await?;
    }
    let at_bn = list_assistance(bn, "received").await?;
    let overdue = at_bn
        .iter()
        .find(|s| s.request_id == late.entry_id)
        .unwrap();
    assert_eq!(
        overdue.status,
        pb::AssistanceStatus::Overdue as i32,
        "flagged on both sides"
    );
    // Answered late: accepted, and shown as late on both sides.
    bn.cases()
        .await?
        .answer_assistance(reply(&late.entry_id, "bn-2"))
        .await?;
    eventually("both sides to see the answers", || async {
        let sent = list_assistance(ls, "sent").await?;
        let st = |id: &[u8]| sent.iter().find(|s| s.request_id == id).map(|s| s.status);
        Ok(
            (st(&on_time.entry_id) == Some(pb::AssistanceStatus::Answered as i32)
                && st(&late.entry_id) == Some(pb::AssistanceStatus::AnsweredLate as i32))
            .then_some(()),
        )
    })
    .await?;

    // A coordinated inspection: Bắc Ninh accepts and reports, Hà Nội
    // declines and so may not report.
    let plan = ls_cases
        .record_inspection_event(pb::InspectionEvent {
            reference: "plan-1".into(),
            event: Some(pb::inspection_event::Event::Plan(pb::InspectionPlan {
                title: "Kiểm tra liên tỉnh mỹ phẩm".into(),
                provinces: vec!["24".into(), "01".into()],
                starts_unix_ms: now_ms(),
                ends_unix_ms: now_ms() + 86_400_000,
                category: pb::Category::Counterfeit as i32,
                ..Default::default()
            })),
            ..Default::default()
        })
        .await?
        .into_inner();
    let plan_id = plan.written.unwrap().entry_id;
    let insp = |r: &str, e| pb::InspectionEvent {
        plan_id: plan_id.clone(),
        reference: r.into(),
        event: Some(e),
    };
    let report_ev = pb::inspection_event::Event::Report(pb::InspectionReport {
        findings: "12 cơ sở, 3 vi phạm".into(),
        inspected: 12,
        violations: 3,
        fines_vnd: 45_000_000,
        seized_value_vnd: 60_000_000,
        case_ids: vec![],
    });
    for (n, r) in [(bn, "bn-accept"), (hn, "hn-decline")] {
        let accept = n.member == "24";
        eventually("the plan to arrive", || async {
            Ok(n.cases()
                .await?
                .get_inspection(pb::GetInspectionRequest {
                    plan_id: plan_id.clone(),
                })
                .await
                .ok())
        })
        .await?;
        n.cases()
            .await?
            .record_inspection_event(insp(
                r,
                pb::inspection_event::Event::Acceptance(answer(accept)),
            ))
            .await?;
    }
    bn.cases()
        .await?
        .record_inspection_event(insp("bn-report", report_ev.clone()))
        .await?;
    let refused = hn
        .cases()
        .await?
        .record_inspection_event(insp("hn-report", report_ev))
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::FailedPrecondition);
    let st = eventually("the plan's state at the planner", || {
        let mut c = ls_cases.clone();
        let plan_id = plan_id.clone();
        async move {
            let s = c
                .get_inspection(pb::GetInspectionRequest {
                    plan_id: plan_id.clone(),
                })
                .await?
                .into_inner();
            Ok((s.participants.iter().all(|p| p.answered) && s.inspected == 12).then_some(s))
        }
    })
    .await?;
    assert_eq!(st.violations, 3);

    // A meeting's minutes reach its participants.
    let m = ls_cases
        .record_meeting(pb::Meeting {
            reference: "hop-quy-4".into(),
            title: "Giao ban Ban Chỉ đạo 389 quý IV".into(),
            held_unix_ms: now_ms() - 3_600_000,
            place: "Lạng Sơn".into(),
            participants: vec!["24".into(), "01".into()],
            minutes: "Thống nhất phối hợp kiểm tra mỹ phẩm".into(),
            decisions: vec!["Lập tổ công tác liên tỉnh".into()],
        })
        .await?
        .into_inner();
    let meeting_id = m.entry_id.clone();

    // Retraction and correction: an alert goes out, is corrected; every
    // recipient hides the old one, shows the new one, and signs a receipt.
    let mut ls_alerts = ls.alerts().await?;
    ls_alerts
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert("ls-earlier")),
        })
        .await?;
    let old = ls_alerts
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert("ls-wrong")),
        })
        .await?
        .into_inner();
    // A correction of the old alert to `alert`.
    let correction = |alert: pb::Alert| pb::CorrectRequest {
        entry_id: old.entry_id.clone(),
        alert: Some(alert),
        reason: "Sai nhãn hiệu".into(),
    };
    // A correction whose reference names another, earlier alert is
    // refused, and the old alert stays as it was.
    let err = ls_alerts
        .correct(correction(sample_alert("ls-earlier")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("alert.reference"), "{err}");
    let still = ls_alerts
        .get(pb::GetEntryRequest {
            key: Some(Key::EntryId(old.entry_id.clone())),
        })
        .await?
        .into_inner();
    assert!(still.retracted_by.is_empty(), "{still:?}");
    let mut fixed = sample_alert("ls-fixed");
    fixed.title = "Phát hiện mỹ phẩm giả nhãn hiệu Whoo (đính chính)".into();
    // The replacement stored, but not the retraction: as a correction cut
    // off between its two writes leaves it.
    let stored_first = ls_alerts
        .submit(pb::SubmitAlertRequest {
            alert: Some(fixed.clone()),
        })
        .await?
        .into_inner();
    // A correction naming that newer alert's reference but saying
    // something else is not its retry, and is refused.
    let mut other = fixed.clone();
    other.title = "Một cảnh báo khác".into();
    let err = ls_alerts.correct(correction(other)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("says something else"), "{err}");
    // The same alert again is the retry: the old alert is retracted in
    // favour of the one stored first.
    let corrected = ls_alerts
        .correct(correction(fixed.clone()))
        .await?
        .into_inner();
    let retraction_id = corrected.retraction.unwrap().entry_id;
    let replacement = corrected.replacement.unwrap();
    assert!(replacement.duplicate);
    assert_eq!(replacement.entry_id, stored_first.entry_id);
    let new_id = replacement.entry_id;
    // Correcting again answers the same two entries.
    let again = ls_alerts
        .correct(correction(fixed.clone()))
        .await?
        .into_inner();
    assert_eq!(again.retraction.unwrap().entry_id, retraction_id);
    // The same reference with other words is not that retry.
    let mut reworded = fixed.clone();
    reworded.description = "Mô tả khác".into();
    let err = ls_alerts.correct(correction(reworded)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("alert.reference"), "{err}");
    for n in [bn, hn] {
        let mut a = n.alerts().await?;
        let held = eventually("the retraction to arrive", || {
            let mut a = a.clone();
            let id = old.entry_id.clone();
            async move {
                let e = a
                    .get(pb::GetEntryRequest {
                        key: Some(Key::EntryId(id)),
                    })
                    .await
                    .ok()
                    .map(tonic::Response::into_inner);
                Ok(e.filter(|e| !e.retracted_by.is_empty()))
            }
        })
        .await?;
        assert_eq!(held.retracted_by, retraction_id);
        assert_eq!(held.replaced_by, new_id);
        let shown = a
            .query(pb::QueryRequest {
                text: "ohui".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(
            shown.entries.iter().all(|e| e.entry_id != old.entry_id),
            "a retracted alert is left out of queries"
        );
        let all = a
            .query(pb::QueryRequest {
                text: "ohui".into(),
                include_retracted: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(all.entries.iter().any(|e| e.entry_id == old.entry_id));
        let receipts = a
            .query(pb::QueryRequest {
                kinds: vec![pb::EntryKind::Receipt as i32],
                author: n.member.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await?
            .into_inner();
        let receipt_for = |id: &[u8]| {
            receipts.entries.iter().any(|e| {
                matches!(&e.body.as_ref().unwrap().payload,
                    Some(pb::entry_body::Payload::Receipt(r)) if lienthong_tests::acknowledges(r, id))
            })
        };
        assert!(
            receipt_for(&retraction_id),
            "{} signed a receipt for the retraction",
            n.member
        );
        assert!(
            receipt_for(&meeting_id),
            "{} signed a receipt for the minutes",
            n.member
        );
        // Only the author retracts.
        let denied = a
            .retract(pb::RetractRequest {
                entry_id: new_id.clone(),
                reason: "không phải của tôi".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::FailedPrecondition);
    }

    // Statistics over today, from what each node holds.
    let day = now_ms() - 86_400_000;
    let r = ls_cases
        .report(pb::ReportRequest {
            from_unix_ms: day,
            to_unix_ms: now_ms() + 60_000,
        })
        .await?
        .into_inner();
    let row = |code: &str| {
        r.provinces
            .iter()
            .find(|p| p.province == code)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        row("20").alerts,
        2,
        "the corrected alert and the earlier one count, the retracted one does not"
    );
    assert_eq!(r.retracted, 1);
    assert_eq!(row("20").assistance_sent, 2);
    let bn_row = row("24");
    assert_eq!(
        (
            bn_row.assistance_received,
            bn_row.answered_in_time,
            bn_row.answered_late
        ),
        (2, 1, 1)
    );
    assert_eq!(bn_row.inspection_reports, 1);
    assert_eq!(row("20").meetings, 1);
    let csv = run_ok(&[
        "report",
        "--config",
        &ls.config_arg(),
        "--from",
        &day.to_string(),
        "--to",
        &(now_ms() + 60_000).to_string(),
        "--csv",
    ])?;
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("province,alerts,cases_opened"),
        "{csv}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("24 Bắc Ninh,0,0,0,0,2,1,1,0")),
        "{csv}"
    );
    assert!(lines.last().unwrap().starts_with("total,2,"), "{csv}");

    // Everything above is in the signed logs, and verifies.
    bundles_verify(&f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_and_handovers_can_be_declined_and_a_case_transferred() -> anyhow::Result<()> {
    let mut f = federation(&THREE, 3, AGREEMENT)?;
    f.start_all()?;
    let [ls, bn, hn] = [&f.nodes[0], &f.nodes[1], &f.nodes[2]];
    let id = record(
        ls,
        ev(
            "t-open",
            &[],
            Event::Opened(pb::CaseOpened {
                title: "Gian lận xuất xứ hàng dệt may".into(),
                category: pb::Category::TradeFraud as i32,
                ..Default::default()
            }),
        ),
    )
    .await?
    .written
    .unwrap()
    .entry_id;
    // An invitation after the opening brings Hà Nội in (with the history);
    // it declines.
    record(
        ls,
        ev(
            "t-invite",
            &id,
            Event::Invitation(pb::CaseInvitation {
                provinces: vec!["01".into()],
                message: "Đề nghị phối hợp".into(),
            }),
        ),
    )
    .await?;
    let s = steps_at(hn, &id, 2).await?;
    assert_eq!(s.invited, ["01"]);
    record(
        hn,
        ev("t-decline", &id, Event::InvitationAnswer(answer(false))),
    )
    .await?;
    let s = steps_at(ls, &id, 3).await?;
    assert_eq!(
        (s.declined.clone(), s.invited.len()),
        (vec!["01".to_owned()], 0)
    );
    // Declined, Hà Nội may not record anything.
    let e = record(hn, ev("t-seize", &id, seizure(1)))
        .await
        .unwrap_err();
    assert_eq!(
        e.downcast::<tonic::Status>()?.code(),
        Code::FailedPrecondition
    );

    // A handover to Bắc Ninh, declined: Lạng Sơn stays the lead.
    record(
        ls,
        ev(
            "t-handover",
            &id,
            Event::Handover(pb::CaseHandover {
                to: "24".into(),
                reason: "Kho hàng ở Bắc Ninh".into(),
            }),
        ),
    )
    .await?;
    steps_at(bn, &id, 4).await?;
    record(bn, ev("t-no", &id, Event::HandoverAnswer(answer(false)))).await?;
    let s = steps_at(ls, &id, 5).await?;
    assert_eq!((s.lead.as_str(), s.handover_to.as_str()), ("20", ""));
    assert_eq!(s.status, pb::CaseStatus::Open as i32);

    // Beyond administrative handling: transferred to the police.
    let r = record(
        ls,
        ev(
            "t-transfer",
            &id,
            Event::Transfer(pb::CaseTransfer {
                target: pb::TransferTarget::Police as i32,
                agency: "Phòng Cảnh sát kinh tế Công an tỉnh Lạng Sơn".into(),
                reason: "Có dấu hiệu tội phạm".into(),
            }),
        ),
    )
    .await?;
    let s = r.state.unwrap();
    assert_eq!(s.status, pb::CaseStatus::Transferred as i32);
    assert_eq!(s.transfers.len(), 1);
    // Both declined, so the case's circle is Lạng Sơn alone: the transfer
    // is signed for nobody else, and they keep the case as it was.
    let transfer = ls
        .alerts()
        .await?
        .get(pb::GetEntryRequest {
            key: Some(Key::EntryId(r.written.unwrap().entry_id)),
        })
        .await?
        .into_inner();
    assert_eq!(transfer.body.unwrap().audience, ["20"]);
    // (Hà Nội left the circle when it declined, before the handover.)
    for (n, held) in [(bn, 5), (hn, 3)] {
        let there = steps_at(n, &id, held).await?;
        assert_eq!(there.status, pb::CaseStatus::Open as i32, "{}", n.member);
        assert_eq!(there.steps.len(), held, "{}", n.member);
    }
    // Bad input is refused before anything is written.
    let e = ls
        .cases()
        .await?
        .record_case_event(pb::CaseEvent {
            case_id: vec![1; 5],
            reference: "t-bad".into(),
            parents: vec![vec![0; 32]],
            event: Some(Event::Closure(pb::CaseClosure::default())),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    for field in [
        "case_event.case_id",
        "case_event.parents",
        "case_event.closure.outcome",
        "case_event.closure.summary",
    ] {
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    Ok(())
}

/// Bắc Ninh opens a case with Hà Nội, hands it over to it, then leaves the
/// federation (manifest version 2 no longer lists it). Lạng Sơn, invited
/// afterwards, checks the case's history, Bắc Ninh's events included, with
/// the key Bắc Ninh held when it wrote them, and holds the whole case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_checks_the_history_of_a_member_who_left() -> anyhow::Result<()> {
    use crate::federation::{manifest_cmd, wait_for_manifest};
    let mut f = federation(&THREE, 3, AGREEMENT)?;
    f.start_all()?;
    let (bn, hn) = (&f.nodes[1], &f.nodes[2]);
    let id = record(
        bn,
        ev(
            "left-open",
            &[],
            Event::Opened(pb::CaseOpened {
                title: "Kho mỹ phẩm giả ở Từ Sơn".into(),
                category: pb::Category::Counterfeit as i32,
                invite: vec!["01".into()],
                ..Default::default()
            }),
        ),
    )
    .await?
    .written
    .unwrap()
    .entry_id;
    steps_at(hn, &id, 1).await?;
    record(
        hn,
        ev("left-join", &id, Event::InvitationAnswer(answer(true))),
    )
    .await?;
    steps_at(bn, &id, 2).await?;
    record(
        bn,
        ev(
            "left-handover",
            &id,
            Event::Handover(pb::CaseHandover {
                to: "01".into(),
                reason: "Đầu mối ở Hà Nội".into(),
            }),
        ),
    )
    .await?;
    steps_at(hn, &id, 3).await?;
    record(
        hn,
        ev("left-take", &id, Event::HandoverAnswer(answer(true))),
    )
    .await?;
    let before = steps_at(bn, &id, 4).await?;
    assert_eq!(before.lead, "01");

    // Version 2: Bắc Ninh's member block gone, signed by the other two (a
    // majority of version 1's three), handed to Hà Nội.
    let bn_pin = format!("code = \"{}\"", bn.member);
    f.nodes[1].stop()?;
    let (ls, hn) = (&f.nodes[0], &f.nodes[2]);
    let toml = std::fs::read_to_string(f.dir.path().join("manifest.toml"))?;
    let (head, rest) = toml.split_once("[[members]]").unwrap();
    let mut v2 = head.replace("version = 1", "version = 2");
    for block in rest.split("[[members]]") {
        // The last block ends with the agreement, which stays.
        let (member, tail) = match block.find("\n\n[agreement") {
            Some(at) => block.split_at(at),
            None => (block, ""),
        };
        if !member.contains(&bn_pin) {
            v2.push_str("[[members]]");
            v2.push_str(member);
        }
        v2.push_str(tail);
    }
    anyhow::ensure!(!v2.contains(&bn_pin) && v2.contains("[agreement]"), "{v2}");
    let v2_path = f.dir.path().join("manifest-v2.toml");
    std::fs::write(&v2_path, &v2)?;
    let m = f.dir.path().join("manifest.json").display().to_string();
    manifest_cmd("propose", "--toml", &v2_path.display().to_string(), &m)?;
    for n in [ls, hn] {
        manifest_cmd("sign", "--config", &n.config_arg(), &m)?;
    }
    manifest_cmd("publish", "--config", &hn.config_arg(), &m)?;
    for n in [ls, hn] {
        wait_for_manifest(n, 2).await?;
    }

    // Hà Nội, now the lead, invites Lạng Sơn, which never saw the case.
    assert!(state(ls, &id).await?.is_none());
    record(
        hn,
        ev(
            "left-invite",
            &id,
            Event::Invitation(pb::CaseInvitation {
                provinces: vec!["20".into()],
                message: "Đề nghị phối hợp".into(),
            }),
        ),
    )
    .await?;
    let s = steps_at(ls, &id, 5).await?;
    assert_eq!(s.title, "Kho mỹ phẩm giả ở Từ Sơn");
    assert_eq!(
        (s.lead.as_str(), s.invited.as_slice()),
        ("01", &["20".to_owned()][..])
    );
    assert_eq!(
        summary(&s).steps[..4],
        summary(&before).steps[..],
        "the same history as Bắc Ninh held"
    );
    assert!(!ls.log().contains("bad_history"), "{}", ls.log());
    Ok(())
}
