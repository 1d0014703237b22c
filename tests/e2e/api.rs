//! The Alerts API as a local system uses it.

use std::time::Duration;

use lienthong_proto::v1::{self as pb, get_entry_request::Key};
use lienthong_tests::{Node, sample_alert};
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_get_query_and_watch() -> anyhow::Result<()> {
    let mut node = Node::init("20", "Lạng Sơn")?;
    node.start()?;
    let mut c = node.alerts().await?;

    // Watch from the start before anything exists: it must deliver live entries.
    let mut watch = c
        .watch(pb::WatchRequest { from_cursor: 0 })
        .await?
        .into_inner();

    let mut ids = Vec::new();
    for i in 0..5 {
        let mut a = sample_alert(&format!("ls-{i}"));
        if i == 3 {
            a.title = "Thuốc lá điếu nhập lậu".into();
            a.category = pb::Category::Smuggling as i32;
            a.subjects.truncate(0);
        }
        let r = c
            .submit(pb::SubmitAlertRequest { alert: Some(a) })
            .await?
            .into_inner();
        assert_eq!(r.index, i);
        assert!(!r.duplicate);
        assert_eq!(r.author, "20");
        ids.push(r.entry_id);
    }

    // Get by id, hex id, index and reference all find the same entry.
    for key in [
        Key::EntryId(ids[2].clone()),
        Key::EntryIdHex(hex::encode(&ids[2])),
        Key::OwnIndex(2),
        Key::Reference("ls-2".into()),
    ] {
        let e = c
            .get(pb::GetEntryRequest { key: Some(key) })
            .await?
            .into_inner();
        assert_eq!(e.entry_id, ids[2]);
        assert_eq!(e.verification, pb::Verification::AuthoredHere as i32);
        assert_eq!(e.body.unwrap().index, 2);
    }
    let missing = c
        .get(pb::GetEntryRequest {
            key: Some(Key::Reference("nope".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Text with and without diacritics finds the same alerts.
    let q = |text: &str| pb::QueryRequest {
        text: text.into(),
        ..Default::default()
    };
    let with = c.query(q("mỹ phẩm giả")).await?.into_inner().entries;
    let without = c.query(q("MY PHAM GIA")).await?.into_inner().entries;
    assert_eq!(with.len(), 4);
    assert_eq!(with, without);
    assert_eq!(c.query(q("thuoc la")).await?.into_inner().entries.len(), 1);

    // Exact identifiers, in any accepted spelling.
    let by_plate = c
        .query(pb::QueryRequest {
            subject_id: "12c 045 67".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .entries;
    assert_eq!(by_plate.len(), 4);
    let by_category = c
        .query(pb::QueryRequest {
            categories: vec![pb::Category::Smuggling as i32],
            ..Default::default()
        })
        .await?
        .into_inner()
        .entries;
    assert_eq!(by_category.len(), 1);
    assert_eq!(by_category[0].entry_id, ids[3]);
    let none = c
        .query(pb::QueryRequest {
            province: "01".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .entries;
    assert!(none.is_empty());

    // Paging: newest first, every entry exactly once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .query(pb::QueryRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        seen.extend(page.entries.iter().map(|e| e.body.as_ref().unwrap().index));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, vec![4, 3, 2, 1, 0]);

    // The watch saw all five, in order.
    for i in 0..5u64 {
        let e = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await??
            .expect("entry");
        assert_eq!(e.cursor, i);
    }
    // Resuming from a cursor gives the rest.
    let mut resumed = c
        .watch(pb::WatchRequest { from_cursor: 3 })
        .await?
        .into_inner();
    assert_eq!(resumed.message().await?.unwrap().cursor, 3);
    assert_eq!(resumed.message().await?.unwrap().cursor, 4);
    node.stop()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_reference_never_makes_two_entries() -> anyhow::Result<()> {
    let mut node = Node::init("24", "Bắc Ninh")?;
    node.start()?;
    let c = node.alerts().await?;
    // Twenty concurrent submissions of one reference, in one group commit or several.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.submit(pb::SubmitAlertRequest {
                alert: Some(sample_alert("bn-dup-1")),
            })
            .await
            .map(|r| r.into_inner())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await??);
    }
    assert!(
        answers
            .iter()
            .all(|a| a.entry_id == answers[0].entry_id && a.index == 0)
    );
    assert_eq!(answers.iter().filter(|a| !a.duplicate).count(), 1);
    let all = c
        .clone()
        .query(pb::QueryRequest::default())
        .await?
        .into_inner()
        .entries;
    assert_eq!(all.len(), 1);
    Ok(())
}

/// A correction and a plain retraction of the same alert, sent at once,
/// never leave a correction answered with a retraction that does not name
/// its replacement: whichever is first decides, and the other sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_and_a_retraction_at_once_agree_on_what_happened() -> anyhow::Result<()> {
    const ALERTS: usize = 24;
    let mut node = Node::init("24", "Bắc Ninh")?;
    node.start()?;
    let mut c = node.alerts().await?;
    let mut olds = Vec::new();
    for i in 0..ALERTS {
        let r = c
            .submit(pb::SubmitAlertRequest {
                alert: Some(sample_alert(&format!("race-{i}"))),
            })
            .await?
            .into_inner();
        olds.push(r.entry_id);
    }
    let mut tasks = Vec::new();
    for (i, old) in olds.iter().enumerate() {
        let (mut a, mut b) = (c.clone(), c.clone());
        let (x, y) = (old.clone(), old.clone());
        let correct = tokio::spawn(async move {
            a.correct(pb::CorrectRequest {
                entry_id: x,
                alert: Some(sample_alert(&format!("race-{i}-fixed"))),
                reason: "Sai nhãn hiệu".into(),
            })
            .await
            .map(tonic::Response::into_inner)
        });
        let retract = tokio::spawn(async move {
            b.retract(pb::RetractRequest {
                entry_id: y,
                reason: "Nhập nhầm".into(),
            })
            .await
            .map(tonic::Response::into_inner)
        });
        tasks.push((old.clone(), correct, retract));
    }
    let (mut corrected, mut retracted) = (0, 0);
    for (old, correct, retract) in tasks {
        let correct = correct.await?;
        let retract = retract.await?;
        let held = c
            .get(pb::GetEntryRequest {
                key: Some(Key::EntryId(old.clone())),
            })
            .await?
            .into_inner();
        assert!(!held.retracted_by.is_empty(), "retracted either way");
        match correct {
            Ok(r) => {
                corrected += 1;
                let (x, n) = (r.retraction.unwrap(), r.replacement.unwrap());
                assert_eq!(held.retracted_by, x.entry_id);
                assert_eq!(held.replaced_by, n.entry_id, "the correction's replacement");
                // The retraction, first or second, answers with the same entry.
                assert_eq!(retract?.entry_id, x.entry_id);
            }
            Err(e) => {
                retracted += 1;
                assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
                assert!(held.replaced_by.is_empty(), "{held:?}");
                assert_eq!(retract?.entry_id, held.retracted_by);
            }
        }
    }
    assert_eq!(corrected + retracted, ALERTS);
    Ok(())
}

/// Each row breaks one field; the answer is INVALID_ARGUMENT naming exactly
/// that field, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_field_and_stores_nothing() -> anyhow::Result<()> {
    let mut node = Node::init("01", "Hà Nội")?;
    node.start()?;
    let mut c = node.alerts().await?;
    type Breaker = fn(&mut pb::Alert);
    let rows: &[(&str, Breaker)] = &[
        ("alert.reference", |a| a.reference = "có dấu".into()),
        ("alert.category", |a| a.category = 42),
        ("alert.severity", |a| a.severity = 0),
        ("alert.title", |a| a.title = String::new()),
        ("alert.description", |a| a.description = "\u{0}".into()),
        ("alert.location", |a| a.location = None),
        ("alert.location.province", |a| {
            a.location.as_mut().unwrap().province = "02".into()
        }),
        ("alert.observed_unix_ms", |a| {
            a.observed_unix_ms = 1_700_000_000
        }),
        ("alert.subjects[0].vehicle.plate", |a| {
            a.subjects[0].kind = Some(pb::subject::Kind::Vehicle(pb::Vehicle {
                plate: "X".into(),
                ..Default::default()
            }))
        }),
        ("alert.subjects[1].goods.hs_code", |a| {
            if let Some(pb::subject::Kind::Goods(g)) = &mut a.subjects[1].kind {
                g.hs_code = "1".into();
            }
        }),
        ("alert.attachments[0].sha256", |a| {
            a.attachments = vec![pb::Attachment {
                sha256: vec![0; 3],
                media_type: "image/png".into(),
                size_bytes: 10,
                name: String::new(),
            }]
        }),
        ("alert.concerned_provinces[0]", |a| {
            a.concerned_provinces = vec!["00".into()]
        }),
    ];
    for (field, breaker) in rows {
        let mut a = sample_alert("hn-bad");
        breaker(&mut a);
        let s = c
            .submit(pb::SubmitAlertRequest { alert: Some(a) })
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{field}");
        let fields: Vec<String> = s
            .get_details_bad_request()
            .expect("BadRequest detail")
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, vec![field.to_string()], "{field}: {}", s.message());
        assert!(
            s.message().contains(field),
            "message names the field: {}",
            s.message()
        );
    }
    let s = c
        .submit(pb::SubmitAlertRequest { alert: None })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let q = c
        .query(pb::QueryRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        q.get_details_bad_request().unwrap().field_violations[0].field,
        "page_size"
    );
    let q = c
        .query(pb::QueryRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(q.code(), Code::InvalidArgument);

    // Nothing was stored: the feed is empty and the reference is unknown.
    assert!(
        c.query(pb::QueryRequest::default())
            .await?
            .into_inner()
            .entries
            .is_empty()
    );
    let r = c
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert("hn-bad")),
        })
        .await?
        .into_inner();
    assert_eq!((r.index, r.duplicate), (0, false));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_stock_clients() -> anyhow::Result<()> {
    let mut node = Node::init("22", "Quảng Ninh")?;
    node.start()?;
    let mut h = tonic_health::pb::health_client::HealthClient::new(node.channel().await?);
    let r = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: "lienthong.v1.Alerts".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Server reflection lists our services, so grpcurl needs no .proto files.
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut r = ServerReflectionClient::new(node.channel().await?);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = r
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await?.and_then(|a| a.message_response)
    else {
        anyhow::bail!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "lienthong.v1.Alerts",
        "lienthong.v1.Audit",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&s.to_owned()), "{s} not in {names:?}");
    }
    Ok(())
}

#[test]
fn cli_submit_and_list_with_and_without_diacritics() -> anyhow::Result<()> {
    let mut node = Node::init("20", "Lạng Sơn")?;
    node.start()?;
    let examples = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/alerts-lang-son.json"
    );
    let cfg = node.config_arg();
    let out =
        lienthong_tests::lienthong(&["alert", "submit", "--config", &cfg, "--file", examples])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = |args: &[&str]| -> anyhow::Result<String> {
        let mut a = vec!["alert", "list", "--config", &cfg];
        a.extend_from_slice(args);
        let out = lienthong_tests::lienthong(&a)?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    };
    let a = list(&["--kind", "counterfeit", "--text", "hang gia"])?;
    let b = list(&["--kind", "counterfeit", "--text", "hàng giả"])?;
    assert_eq!(a, b);
    assert_eq!(a.lines().count(), 1, "{a}");
    assert!(a.contains("mỹ phẩm giả"));
    assert_eq!(list(&["--subject", "4900123456"])?.lines().count(), 1);
    let bad = lienthong_tests::lienthong(&[
        "alert",
        "submit",
        "--config",
        &cfg,
        "--file",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/examples/bad-alert.json"
        ),
    ])?;
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    for f in [
        "alert.reference",
        "alert.title",
        "alert.location.province",
        "alert.subjects[0].person.citizen_id",
    ] {
        assert!(err.contains(f), "{f} in {err}");
    }
    Ok(())
}

/// `lienthong alert list | head`: the CLI ends quietly when its reader
/// goes away (status 141, as for SIGPIPE), not with a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_ends_quietly_when_its_reader_goes_away() -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut node = Node::init("20", "Lạng Sơn")?;
    node.start()?;
    let mut c = node.alerts().await?;
    for i in 0..300 {
        c.submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert(&format!("pipe-{i}"))),
        })
        .await?;
    }
    let mut child = std::process::Command::new(lienthong_tests::binary())
        .args([
            "alert",
            "list",
            "--json",
            "--all",
            "--config",
            &node.config_arg(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut first = [0u8; 100];
    child
        .stdout
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?
        .read_exact(&mut first)?;
    drop(child.stdout.take());
    let out = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    Ok(())
}

/// A `Watch` client that stops reading holds data the node cannot send
/// (HTTP/2 flow control). The node still stops promptly on SIGTERM, and
/// its last checkpoint covers everything it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_client_that_stops_reading_does_not_hold_up_a_stop() -> anyhow::Result<()> {
    let mut node = Node::init("20", "Lạng Sơn")?;
    node.start()?;
    let mut c = node.alerts().await?;
    // Opened on a connection of its own, then never read: several MiB
    // will wait for it.
    let stuck = node
        .alerts()
        .await?
        .watch(pb::WatchRequest { from_cursor: 0 })
        .await?
        .into_inner();
    let long = "hàng giả nhập lậu qua cửa khẩu ".repeat(600);
    let count = 150;
    for i in 0..count {
        let mut a = sample_alert(&format!("big-{i}"));
        a.description = long.clone();
        c.submit(pb::SubmitAlertRequest { alert: Some(a) }).await?;
    }
    let stopped = tokio::task::spawn_blocking(move || node.stop().map(|()| node)).await?;
    drop(stuck);
    let mut node = stopped?;
    let log = node.log();
    assert!(log.contains("clients still connected"), "{log}");
    // The writer outlived the server (connections closed by force held
    // it) and still finished, as the runtime ended.
    assert!(log.contains("writer stopped"), "{log}");

    node.start()?;
    let mut audit = node.audit().await?;
    let cp = audit
        .get_checkpoint(pb::GetCheckpointRequest::default())
        .await?
        .into_inner();
    assert_eq!(cp.size, count, "the last checkpoint covers every alert");
    node.stop()
}
