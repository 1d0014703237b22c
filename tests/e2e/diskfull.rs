//! Issue 8 item 6: the disk fills up under load. The node is started with
//! a file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored, so writes past it
//! fail as on a full disk); once the store cannot grow, submissions are
//! refused with a clear error and nothing half-written is acknowledged.
//! After restarting without the limit, every acknowledged alert is there,
//! exactly once, in a feed that verifies, and the node writes again.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lienthong_proto::v1 as pb;
use lienthong_tests::{Node, binary, sample_alert};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_loses_nothing_acknowledged() -> anyhow::Result<()> {
    let mut node = Node::init("20", "Lạng Sơn")?;
    // A first start creates the store; its size is the starting point.
    node.start()?;
    node.stop()?;
    let db = node.path().join("store/db");
    let size_kib = std::fs::metadata(&db)?.len() / 1024;
    let limit_kib = size_kib + 3 * 1024;

    let ready = node.path().join("ready");
    let _ = std::fs::remove_file(&ready);
    let log = std::fs::File::create(node.path().join("node-diskfull.log"))?;
    let mut child = Command::new("bash")
        .args([
            "-c",
            &format!(
                "trap '' XFSZ; ulimit -f {limit_kib}; exec \"$0\" run --config \"$1\" --ready-file \"$2\""
            ),
            &binary().display().to_string(),
            &node.config_arg(),
            &ready.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        anyhow::ensure!(Instant::now() < deadline, "node did not start");
        anyhow::ensure!(child.try_wait()?.is_none(), "node exited at start");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Submit until the store cannot grow (bounded by count and time).
    let mut c = node.alerts().await?;
    let mut acked = Vec::new();
    let mut refusal = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    let big = "Hàng giả nhãn hiệu. ".repeat(900);
    for i in 0..20_000 {
        anyhow::ensure!(Instant::now() < deadline, "the store never filled up");
        let r = format!("full-{i}");
        let mut a = sample_alert(&r);
        a.description = big.clone();
        match c.submit(pb::SubmitAlertRequest { alert: Some(a) }).await {
            Ok(_) => acked.push(r),
            Err(s) => {
                refusal = Some(s);
                break;
            }
        }
    }
    let refusal = refusal.expect("a refusal");
    assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
    // Later submissions keep being refused, not half-accepted.
    let again = c
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert("after-full")),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::Unavailable, "{again:?}");
    assert!(
        !acked.is_empty(),
        "nothing was stored before the disk filled"
    );

    // Power goes (SIGKILL); the disk is freed (no limit); the node comes
    // back with everything it acknowledged.
    child.kill()?;
    child.wait()?;
    node.start()?;
    let mut c = node.alerts().await?;
    for r in &acked {
        let e = c
            .get(pb::GetEntryRequest {
                key: Some(pb::get_entry_request::Key::Reference(r.clone())),
            })
            .await
            .map_err(|e| anyhow::anyhow!("acknowledged {r} is lost: {e}"))?
            .into_inner();
        assert_eq!(e.body.unwrap().author, "20");
    }
    let after = c
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert("after-restart")),
        })
        .await?
        .into_inner();
    assert_eq!(
        after.index as usize,
        acked.len(),
        "one entry per acknowledged alert"
    );
    node.feed_verify(None)?;
    eprintln!(
        "store limited to {limit_kib} KiB: {} alerts acknowledged, then {:?}: {}",
        acked.len(),
        refusal.code(),
        refusal.message()
    );
    Ok(())
}
