//! Issue 9 item 4: an online, consistent backup while clients submit, and a
//! restore that never takes the feed back behind what the node signed.

use std::path::Path;

use lienthong_proto::v1 as pb;
use lienthong_tests::{Node, files_of, lienthong, run_ok, sample_alert};

async fn submit_many(node: &Node, prefix: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let mut tasks = Vec::new();
    for t in 0..4 {
        let mut c = node.alerts().await?;
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in (t..n).step_by(4) {
                let r = format!("{prefix}-{i}");
                c.submit(pb::SubmitAlertRequest {
                    alert: Some(sample_alert(&r)),
                })
                .await?;
                acked.push(r);
            }
            anyhow::Ok(acked)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

fn backup(node: &Node, label: &str) -> anyhow::Result<serde_json::Value> {
    let out = run_ok(&[
        "backup",
        "--config",
        &node.config_arg(),
        "--label",
        label,
        "--json",
    ])?;
    Ok(serde_json::from_str(out.trim())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_restores_and_an_older_one_is_refused() -> anyhow::Result<()> {
    let mut node = Node::init("20", "Lạng Sơn")?;
    node.start()?;
    submit_many(&node, "before", 200).await?;

    // A backup taken while four clients keep submitting.
    let during = {
        let n = &node;
        let load = submit_many(n, "during", 400);
        let copy = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            tokio::task::block_in_place(|| backup(n, "under-load"))
        };
        let (acked, b) = tokio::join!(load, copy);
        acked?;
        b?
    };
    let old_path = during["path"].as_str().unwrap().to_owned();
    let old_size = during["checkpointSize"]
        .as_str()
        .unwrap_or("0")
        .parse::<u64>()?;
    assert!(old_size >= 200, "{during}");
    // With the two files that record the newest checkpoint (written in
    // turn: both exist after two checkpoints).
    for name in ["checkpoint.last", "checkpoint.last.b"] {
        assert!(
            std::path::Path::new(&old_path).join(name).exists(),
            "{name} in the backup"
        );
    }

    // More alerts after it, so that it is behind what the node signs even
    // when the load above was all stored before the copy began.
    submit_many(&node, "after", 100).await?;

    // Everything acknowledged so far is in the newest backup.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let newest = backup(&node, "")?;
    let new_path = newest["path"].as_str().unwrap().to_owned();
    assert_eq!(newest["feedSize"].as_str(), Some("700"), "{newest}");

    // Restore refuses while the node runs.
    let running = lienthong(&[
        "restore",
        "--config",
        &node.config_arg(),
        "--from",
        &new_path,
    ])?;
    assert!(!running.status.success());
    assert!(String::from_utf8_lossy(&running.stderr).contains("stop it first"));
    node.stop()?;

    // The older backup is behind what this node signed: refused, and the
    // store is untouched; so is the backup (restore checks a copy of it).
    let backup_before = files_of(Path::new(&old_path))?;
    let older = lienthong(&[
        "restore",
        "--config",
        &node.config_arg(),
        "--from",
        &old_path,
    ])?;
    let why = String::from_utf8_lossy(&older.stderr);
    assert!(!older.status.success(), "older backup restored");
    assert!(
        why.contains("--accept-older") && why.contains("equivocation"),
        "{why}"
    );
    assert!(
        files_of(Path::new(&old_path))? == backup_before,
        "the refused restore changed the backup"
    );
    assert!(
        !node.path().join("store.restoring").exists(),
        "the checked copy was left behind"
    );

    // The store is lost (its database deleted); the newest backup comes
    // back, and every acknowledged alert with it.
    std::fs::remove_file(node.path().join("store/db"))?;
    let out = run_ok(&[
        "restore",
        "--config",
        &node.config_arg(),
        "--from",
        &new_path,
    ])?;
    assert!(out.contains("feed size 700"), "{out}");
    node.start()?;
    let mut c = node.alerts().await?;
    for r in (0..200)
        .map(|i| format!("before-{i}"))
        .chain((0..400).map(|i| format!("during-{i}")))
        .chain((0..100).map(|i| format!("after-{i}")))
    {
        c.get(pb::GetEntryRequest {
            key: Some(pb::get_entry_request::Key::Reference(r.clone())),
        })
        .await
        .map_err(|e| anyhow::anyhow!("{r} lost: {e}"))?;
    }
    node.feed_verify(None)?;
    Ok(())
}
