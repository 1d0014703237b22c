//! The store on a real sled database on disk: group commit, reopening,
//! integrity checks against the signed checkpoint, and queries checked
//! against a naive model.

#![allow(clippy::unwrap_in_result)] // test helpers may panic

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use lienthong_core::proto::{Alert, Category, Location, Severity, entry_body::Payload};
use lienthong_core::terms::{Term, query_words};
use lienthong_log::{Hash, MemoryHashStore, NoteSigner};
use lienthong_store::{
    FeedSigner, NewEntry, OpenOptions, Query, Store, StoreError, Writer, WriterConfig,
};
use proptest::prelude::*;

const ORIGIN: &str = "lienthong.test/t/20";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// Opens the store; waits while a just-dropped handle's background
/// flusher still holds sled's file lock (see `open_raw`).
fn open(dir: &Path) -> Result<Store, StoreError> {
    Store::reopen(
        &OpenOptions {
            dir: dir.to_path_buf(),
            member: "20".into(),
            origin: ORIGIN.into(),
            verifying_keys: vec![key().verifying_key()],
            cache_bytes: lienthong_store::DEFAULT_CACHE_BYTES,
        },
        Duration::from_secs(10),
    )
}

fn writer(store: &Store) -> Writer {
    writer_with(
        store,
        WriterConfig {
            checkpoint_interval: Duration::from_millis(20),
            max_batch: 64,
            ..WriterConfig::default()
        },
    )
}

/// The writer of member 20's feed, signing with [`key`], tuned by `config`.
fn writer_with(store: &Store, config: WriterConfig) -> Writer {
    let signer = FeedSigner {
        author: "20".into(),
        key: key(),
        note_signer: NoteSigner::new(ORIGIN, key()).unwrap(),
    };
    Writer::start(store.clone(), signer, config).unwrap()
}

fn alert(reference: &str, category: Category, province: &str, title: &str) -> NewEntry {
    NewEntry {
        payload: Payload::Alert(Alert {
            reference: reference.into(),
            category: category as i32,
            severity: Severity::Medium as i32,
            title: title.into(),
            location: Some(Location {
                province: province.into(),
                ..Default::default()
            }),
            observed_unix_ms: 1_795_000_000_000,
            ..Default::default()
        }),
        audience: vec![],
        manifest_version: 0,
        agreement_hash: vec![],
        reference: Some(reference.into()),
        handling: 0,
        response_deadline_hours: 0,
        openings: Default::default(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An own entry that would be larger, signed, than readers accept is
/// refused before anything is written (stored, it could never be read or
/// delivered); one just under the limit is stored and reads back.
#[test]
fn an_entry_too_large_to_read_back_is_refused_and_nothing_is_stored() {
    let limit = lienthong_core::entry::MAX_ENVELOPE_BYTES;
    let with_description = |reference: &str, len: usize| {
        let mut e = alert(reference, Category::Counterfeit, "20", "Hàng giả");
        if let Payload::Alert(a) = &mut e.payload {
            a.description = "x".repeat(len);
        }
        e
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let w = writer(&store);
    let rt = rt();
    let err = rt
        .block_on(w.append(with_description("too-big", limit)))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::TooLarge { bytes, limit: l } if bytes > limit && l == limit),
        "{err}"
    );
    assert_eq!(store.durable().feed_size, 0);
    assert!(store.get_by_reference("too-big").unwrap().is_none());

    let near = rt
        .block_on(w.append(with_description("near", limit - 400)))
        .unwrap();
    assert_eq!(near.index, 0);
    let read = store.get_by_reference("near").unwrap().expect("stored");
    assert!(read.envelope.len() <= limit && read.envelope.len() > limit - 400);
    assert!(lienthong_core::entry::decode_envelope(&read.envelope).is_ok());
    // The feed goes on after a refusal.
    let next = rt
        .block_on(w.append(alert("after", Category::Counterfeit, "20", "Sau")))
        .unwrap();
    assert_eq!(next.index, 1);
    w.shutdown();
}

/// Concurrent submissions share group commits; indexes are dense and
/// unique, and the final checkpoint covers exactly the leaves appended.
#[test]
fn concurrent_appends_get_dense_indexes_and_a_matching_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let w = std::sync::Arc::new(writer(&store));
    let answers = rt().block_on(async {
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let w = w.clone();
                tokio::spawn(async move {
                    w.append(alert(
                        &format!("r{i}"),
                        Category::Counterfeit,
                        "20",
                        "hàng giả",
                    ))
                    .await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        out
    });
    let indexes: BTreeSet<u64> = answers.iter().map(|a| a.index).collect();
    assert_eq!(indexes, (0..300).collect());
    std::sync::Arc::try_unwrap(w).ok().unwrap().shutdown();

    let cp = store
        .latest_checkpoint()
        .expect("checkpoint after shutdown");
    assert_eq!(cp.size, 300);
    let verified = lienthong_log::verify_checkpoint_with_key(
        cp.note.as_bytes(),
        ORIGIN,
        &key().verifying_key(),
    )
    .unwrap();
    let mut model = MemoryHashStore::new();
    for i in 0..300 {
        let e = store.get_by_own_index(i).unwrap().unwrap();
        model.append(Hash(e.id.0)).unwrap();
    }
    assert_eq!(model.root().unwrap(), verified.root());
}

/// Store layouts 5 and 6: ids and references go through their runs of
/// staged keys into their buckets. Every id and every reference is found
/// throughout; a run value is removed once a whole turn of the buckets is
/// swept after it, also the values a restart found; and after the
/// restarts every reference is still known to the writer, whose filter
/// says which references are new without reading their buckets.
#[test]
fn staged_ids_and_references_reach_their_buckets_and_their_run_values_go() {
    const WAVE: usize = 1000;
    const WAVES: usize = 34;
    let dir = tempfile::tempdir().unwrap();
    let first_run_value = |dir: &Path, prefix: &[u8]| {
        let db = open_raw(dir);
        let k = db.scan_prefix(prefix).keys().next().map(|k| k.unwrap());
        k.map(|k| u64::from_be_bytes(k[1..].try_into().unwrap()))
    };
    let mut ids = Vec::new();
    for round in 0..2 {
        let store = open(dir.path()).unwrap();
        let w = std::sync::Arc::new(writer(&store));
        rt().block_on(async {
            for wave in 0..WAVES {
                let tasks: Vec<_> = (0..WAVE)
                    .map(|i| {
                        let w = w.clone();
                        let n = (round * WAVES + wave) * WAVE + i;
                        tokio::spawn(async move {
                            w.append(alert(&format!("r{n}"), Category::Counterfeit, "20", "x"))
                                .await
                        })
                    })
                    .collect();
                for t in tasks {
                    let a = t.await.unwrap().unwrap();
                    ids.push((a.id, a.cursor));
                }
            }
        });
        std::sync::Arc::try_unwrap(w).ok().unwrap().shutdown();
        for (n, (id, cursor)) in ids.iter().enumerate().step_by(7) {
            let e = store.get_by_id(id).unwrap().expect("found");
            assert_eq!(e.cursor, *cursor);
            let r = store.get_by_reference(&format!("r{n}")).unwrap();
            assert_eq!(r.expect("found by reference").cursor, *cursor);
        }
        drop(store);
        // The values of the first groups of this round are gone.
        let start = (round * WAVES * WAVE) as u64;
        for prefix in [b"j", b"k"] {
            let first = first_run_value(dir.path(), prefix).expect("a run");
            assert!(first > start + WAVE as u64, "round {round}: {first}");
        }
    }
    let filter_values = open_raw(dir.path()).scan_prefix(b"b").count();
    assert!(
        filter_values > 32,
        "a filter on disk: {filter_values} values"
    );
    let store = open(dir.path()).unwrap();
    for (n, (id, cursor)) in ids.iter().enumerate() {
        assert_eq!(store.get_by_id(id).unwrap().expect("found").cursor, *cursor);
        let r = store.get_by_reference(&format!("r{n}")).unwrap();
        assert_eq!(r.expect("found by reference").cursor, *cursor);
    }
    // Every reference submitted again is known: from the filter on disk,
    // or the run values read at open.
    let w = writer(&store);
    rt().block_on(async {
        for (n, (id, cursor)) in ids.iter().enumerate().step_by(5) {
            let a = w
                .append(alert(&format!("r{n}"), Category::Counterfeit, "20", "x"))
                .await
                .unwrap();
            assert!(a.duplicate && a.id == *id && a.cursor == *cursor, "r{n}");
        }
    });
    w.shutdown();
    assert_eq!(store.durable().feed_size, ids.len() as u64);
}

/// A second writer on the same open store (after the first shut down)
/// knows every reference the first recorded, also those the first swept
/// out of the store's run in memory before the filter was written.
#[test]
fn a_second_writer_on_the_same_store_knows_every_reference() {
    const N: usize = 12_000;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let first = std::sync::Arc::new(writer(&store));
    let mut cursors = Vec::new();
    rt().block_on(async {
        for wave in 0..N / 500 {
            let tasks: Vec<_> = (0..500)
                .map(|i| {
                    let w = first.clone();
                    let n = wave * 500 + i;
                    tokio::spawn(async move {
                        w.append(alert(&format!("s{n}"), Category::Counterfeit, "20", "x"))
                            .await
                    })
                })
                .collect();
            for t in tasks {
                cursors.push(t.await.unwrap().unwrap().cursor);
            }
        }
    });
    std::sync::Arc::try_unwrap(first).ok().unwrap().shutdown();
    let second = writer(&store);
    rt().block_on(async {
        for (n, cursor) in cursors.iter().enumerate().step_by(7) {
            let a = second
                .append(alert(&format!("s{n}"), Category::Counterfeit, "20", "x"))
                .await
                .unwrap();
            assert!(a.duplicate && a.cursor == *cursor, "s{n}");
        }
    });
    second.shutdown();
    assert_eq!(store.durable().feed_size, N as u64);
}

/// Appends `n` alerts `r0…` one by one, then shuts the writer down (which
/// issues a final checkpoint) and closes the store.
fn fill(dir: &Path, n: u64, category: Category, province: &str, title: &str) {
    let store = open(dir).unwrap();
    let w = writer(&store);
    rt().block_on(async {
        for i in 0..n {
            w.append(alert(&format!("r{i}"), category, province, title))
                .await
                .unwrap();
        }
    });
    w.shutdown();
}

#[test]
fn reopening_keeps_entries_references_and_the_feed_position() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10, Category::Smuggling, "15", "thuốc lá");
    let store = open(dir.path()).unwrap();
    assert_eq!(store.durable().feed_size, 10);
    assert_eq!(store.get_by_reference("r3").unwrap().unwrap().body.index, 3);
    let w = writer(&store);
    let (again, next) = rt().block_on(async {
        (
            w.append(alert("r3", Category::Smuggling, "15", "x"))
                .await
                .unwrap(),
            w.append(alert("r10", Category::Smuggling, "15", "x"))
                .await
                .unwrap(),
        )
    });
    assert!(again.duplicate);
    assert_eq!(again.index, 3);
    assert_eq!((next.index, next.duplicate), (10, false));
}

/// After a key rotation the store's last checkpoint is signed with the
/// retired key: it opens when that key is among the member's keys (and
/// only then), and the writer signs the same tree again with the new key.
#[test]
fn a_store_opens_after_a_key_rotation_and_re_signs_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5, Category::Smuggling, "15", "thuốc lá");
    let new = SigningKey::from_bytes(&[43; 32]);
    let opts = |keys: Vec<SigningKey>| OpenOptions {
        dir: dir.path().to_path_buf(),
        member: "20".into(),
        origin: ORIGIN.into(),
        verifying_keys: keys.iter().map(SigningKey::verifying_key).collect(),
        cache_bytes: lienthong_store::DEFAULT_CACHE_BYTES,
    };
    // `fill` has just closed the store: wait out sled's file lock, as
    // every other open here does, so that only the refusal is tested.
    let refused = Store::reopen(&opts(vec![new.clone()]), Duration::from_secs(10));
    assert!(
        matches!(refused, Err(StoreError::Integrity(_))),
        "a checkpoint by no key of the member must be refused: {:?}",
        refused.as_ref().err()
    );
    let store = Store::reopen(&opts(vec![new.clone(), key()]), Duration::from_secs(10)).unwrap();
    let old_note = store.latest_checkpoint().unwrap().note.clone();
    let w = Writer::start(
        store.clone(),
        FeedSigner {
            author: "20".into(),
            key: new.clone(),
            note_signer: NoteSigner::new(ORIGIN, new.clone()).unwrap(),
        },
        WriterConfig::default(),
    )
    .unwrap();
    let cp = store.latest_checkpoint().unwrap();
    assert_eq!(cp.size, 5);
    lienthong_log::verify_checkpoint_with_key(cp.note.as_bytes(), ORIGIN, &new.verifying_key())
        .expect("re-signed with the new key");
    assert_ne!(cp.note, old_note);
    w.shutdown();
}

/// One session on the store in `dir`: appends `refs` one at a time, each
/// once the previous one is in a signed checkpoint, so that every alert
/// gets a checkpoint of its own.
fn session(dir: &Path, refs: &[&str]) {
    let store = open(dir).unwrap();
    let w = writer_with(
        &store,
        WriterConfig {
            checkpoint_interval: Duration::from_millis(5),
            ..WriterConfig::default()
        },
    );
    rt().block_on(async {
        for r in refs {
            let a = w
                .append(alert(r, Category::Smuggling, "20", "x"))
                .await
                .unwrap();
            let mut durable = store.subscribe();
            while store.latest_checkpoint().map_or(0, |c| c.size) <= a.index {
                durable.changed().await.unwrap();
            }
        }
    });
    w.shutdown();
}

/// The size of the note in the checkpoint file `name` of `dir`, if it is
/// there and verifies.
fn recorded(dir: &Path, name: &str) -> Option<u64> {
    let note = std::fs::read(dir.join(name)).ok()?;
    lienthong_log::verify_checkpoint_with_key(&note, ORIGIN, &key().verifying_key())
        .ok()
        .map(|c| c.size())
}

fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

/// The newest signed checkpoint is recorded beside the database in two
/// files written in turn, in place once they exist; a file torn by a
/// crash is survived because the other holds the newer note; a clean
/// shutdown leaves the newest in the first file, which earlier releases
/// read; a database behind the newer note is refused, whichever file
/// holds it.
#[test]
fn the_signed_size_is_kept_in_two_files_written_in_turn() {
    let [a, b] = lienthong_store::LAST_CHECKPOINT_FILES;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keys = [key().verifying_key()];
    let signed = || lienthong_store::last_signed_size(d, ORIGIN, &keys).unwrap();
    let files = || (recorded(d, a), recorded(d, b));
    assert_eq!(signed(), None, "a new store records nothing");

    // Checkpoints of sizes 1, 2 and 3 go to a, b, a.
    session(d, &["s0", "s1", "s2"]);
    assert_eq!(files(), (Some(3), Some(2)));
    let note_3 = std::fs::read(d.join(a)).unwrap();
    let both = (inode(&d.join(a)), inode(&d.join(b)));
    let older = tempfile::tempdir().unwrap();
    copy_store(d, older.path());
    // 4 goes to b, and the clean shutdown writes it to a too.
    session(d, &["s3"]);
    assert_eq!(files(), (Some(4), Some(4)));
    // Equal: either may be written next; then b again at the shutdown.
    session(d, &["s4", "s5"]);
    assert_eq!(files(), (Some(6), Some(6)));
    assert_eq!(
        (inode(&d.join(a)), inode(&d.join(b))),
        both,
        "rewritten in place"
    );
    assert_eq!(signed(), Some(6));

    // A write cut off by a crash tears the file it was writing; the other
    // is whole. The torn one is written next. Here `b`, left longer than
    // a note: the note written over it must not keep its tail.
    std::fs::write(d.join(b), format!("{ORIGIN}\n6\n{}", "x".repeat(1000))).unwrap();
    assert_eq!(signed(), Some(6));
    session(d, &["s6"]);
    assert_eq!(files(), (Some(7), Some(7)));
    // Now `a`: 8 goes to a, and no shutdown write is needed.
    std::fs::write(d.join(a), "torn").unwrap();
    session(d, &["s7"]);
    assert_eq!(files(), (Some(8), Some(7)));

    // A store from an earlier release has only the first file, here
    // behind the database: the store's checkpoint is recorded at open (in
    // a new `b`), then 9 goes to a.
    std::fs::remove_file(d.join(b)).unwrap();
    std::fs::write(d.join(a), &note_3).unwrap();
    session(d, &["s8"]);
    assert_eq!(files(), (Some(9), Some(8)));

    // The database of the first session under the files of the last:
    // behind what this node signed, in `a`. With `a` torn, the note of
    // size 8 in `b` still shows it behind.
    for name in [a, b] {
        std::fs::copy(d.join(name), older.path().join(name)).unwrap();
    }
    let behind = |size: u64, name: &str| {
        let e = open(older.path()).err().expect("refused");
        let text = e.to_string();
        assert!(
            matches!(e, StoreError::Integrity(_))
                && text.contains(&format!(
                    "signed a checkpoint of size {size} ({})",
                    older.path().join(name).display()
                )),
            "{text}"
        );
    };
    behind(9, a);
    std::fs::write(older.path().join(a), "torn").unwrap();
    behind(8, b);
    assert!(open(d).is_ok(), "the store itself still opens");

    // Neither file a note of this member: refused, both named. One file
    // moved aside is not enough; both are.
    std::fs::write(d.join(a), "altered").unwrap();
    std::fs::write(d.join(b), "altered").unwrap();
    let e = open(d).err().expect("refused");
    let text = e.to_string();
    assert!(
        matches!(e, StoreError::Integrity(_))
            && text.contains(&format!(
                "{} and {} do not hold a checkpoint signed by this member",
                d.join(a).display(),
                d.join(b).display()
            )),
        "{text}"
    );
    assert!(lienthong_store::last_signed_size(d, ORIGIN, &keys).is_err());
    std::fs::remove_file(d.join(b)).unwrap();
    let e = open(d).err().expect("refused");
    assert!(
        e.to_string().contains(&format!(
            "{} does not hold a checkpoint signed by this member",
            d.join(a).display()
        )),
        "{e}"
    );
    std::fs::remove_file(d.join(a)).unwrap();
    assert!(open(d).is_ok(), "both moved aside: recorded again at open");
    assert_eq!(files(), (Some(9), None));
}

/// Copies a closed store directory.
fn copy_store(from: &Path, to: &Path) {
    // sled's flusher may hold the lock a moment after the last handle.
    drop(open_raw(from));
    copy_dir(from, to);
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            let sub = to.join(e.file_name());
            std::fs::create_dir_all(&sub).unwrap();
            copy_dir(&e.path(), &sub);
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Writes a few entries with a final checkpoint, then lets `tamper` edit
/// the raw sled database, and returns what opening the store says.
/// Entries holding every word of `text`, at most `limit` of them.
fn all_words(text: &str, limit: usize) -> Query {
    Query {
        groups: query_words(text).into_iter().map(|w| vec![w]).collect(),
        limit,
        max_scan: 100,
        ..Query::default()
    }
}

fn open_after(tamper: impl FnOnce(&sled::Db)) -> Result<Store, StoreError> {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 8, Category::Counterfeit, "24", "mỹ phẩm giả");
    {
        let db = open_raw(dir.path());
        tamper(&db);
        db.flush().unwrap();
    }
    let r = open(dir.path());
    drop(dir);
    r
}

/// Opens the raw sled database once the store's own handle is gone: sled's
/// background flusher may hold its file lock for a moment after the last
/// handle drops (seen as a flaky failure under a loaded test run).
fn open_raw(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open the raw store: {e}"),
        }
    }
}

/// Flips a bit of the stored hash of node `n` at `level` (64 hashes to
/// a `h` value).
fn flip_hash(db: &sled::Db, level: u8, n: u64) {
    let index = tlog_tiles::tlog::stored_hash_index(level, n);
    let mut k = vec![b'h'];
    k.extend_from_slice(&(index / 64).to_be_bytes());
    let mut v = db.get(&k).unwrap().expect("key exists").to_vec();
    v[(index % 64) as usize * 32] ^= 1;
    db.insert(k, v).unwrap();
}

#[test]
fn an_untouched_store_opens() {
    assert!(open_after(|_| {}).is_ok());
}

#[test]
fn a_changed_leaf_hash_is_detected_on_open() {
    let e = open_after(|db| flip_hash(db, 0, 7)).err().expect("refused");
    assert!(
        e.to_string().contains("does not hash to its Merkle leaf"),
        "{e}"
    );
}

#[test]
fn a_changed_interior_hash_is_detected_on_open() {
    let e = open_after(|db| flip_hash(db, 3, 0)).err().expect("refused");
    assert!(e.to_string().contains("Merkle root at size 8"), "{e}");
}

#[test]
fn a_feed_shorter_than_its_checkpoint_is_refused() {
    let e = open_after(|db| {
        let mut k = b"Mfeed_size".to_vec();
        k.truncate(10);
        db.insert(k, &5u64.to_be_bytes()).unwrap();
    })
    .err()
    .expect("refused");
    assert!(
        e.to_string()
            .contains("already signed a checkpoint of size 8"),
        "{e}"
    );
}

#[test]
fn a_store_of_another_layout_version_is_refused_naming_the_release_to_use() {
    let e = open_after(|db| {
        db.insert(
            b"Mformat",
            &(lienthong_store::STORE_FORMAT + 1).to_be_bytes(),
        )
        .unwrap();
    })
    .err()
    .expect("refused");
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "has layout version {}",
            lienthong_store::STORE_FORMAT + 1
        )) && text.contains("use the matching release"),
        "{e}"
    );
}

/// Postings fill blocks of 512 cursors whatever the group size: 1,100
/// alerts taken one at a time (one group each) make 3 blocks for a term
/// they all carry, not 1,100, each holding its cursors as varints, and queries that cross block boundaries, as
/// the driving term or as the term checked per candidate, match a naive
/// scan.
#[test]
fn postings_fill_blocks_of_512_when_alerts_come_one_at_a_time() {
    const CATS: [Category; 3] = [
        Category::Smuggling,
        Category::Counterfeit,
        Category::FoodSafety,
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let w = writer(&store);
    let cursors: Vec<u64> = rt().block_on(async {
        let mut out = Vec::new();
        for i in 0..1100usize {
            let prov = if i.is_multiple_of(2) { "20" } else { "24" };
            let a = alert(&format!("r{i}"), CATS[i % 3], prov, "Thuốc lá lậu");
            out.push(w.append(a).await.unwrap().cursor);
        }
        out
    });
    let word = query_words("thuốc").remove(0);
    for (groups, keep) in [
        (
            vec![vec![Term::province("20")], vec![word.clone()]],
            Box::new(|i: usize| i.is_multiple_of(2)) as Box<dyn Fn(usize) -> bool>,
        ),
        (
            vec![
                vec![Term::category(CATS[1] as i32)],
                vec![Term::province("24")],
            ],
            Box::new(|i: usize| i % 3 == 1 && i % 2 == 1),
        ),
    ] {
        let mut expected: Vec<u64> = (0..1100).filter(|i| keep(*i)).map(|i| cursors[i]).collect();
        expected.reverse();
        let mut got = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .query(&Query {
                    groups: groups.clone(),
                    before_cursor: before,
                    limit: 40,
                    max_scan: 1000,
                    ..Query::default()
                })
                .unwrap();
            got.extend(page.entries.iter().map(|e| e.cursor));
            match page.next_before {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        assert_eq!(got, expected);
    }
    w.shutdown();
    drop(store);
    let db = open_raw(dir.path());
    let blocks = |term: &Term, keep: &dyn Fn(usize) -> bool| -> Vec<usize> {
        let mut prefix = vec![b't'];
        prefix.extend_from_slice(&u16::try_from(term.0.len()).unwrap().to_be_bytes());
        prefix.extend_from_slice(&term.0);
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        for kv in db.scan_prefix(&prefix) {
            let (k, v) = kv.unwrap();
            assert_eq!(k.len(), prefix.len() + 8, "a block key of this term");
            let block = block_cursors(&v);
            assert_eq!(
                k[prefix.len()..],
                block[0].to_be_bytes(),
                "keyed by its first"
            );
            sizes.push(block.len());
            all.extend(block);
        }
        let want: Vec<u64> = (0..1100).filter(|i| keep(*i)).map(|i| cursors[i]).collect();
        assert_eq!(all, want, "the blocks hold the term's cursors");
        sizes
    };
    assert_eq!(blocks(&word, &|_| true), [512, 512, 76]);
    assert_eq!(
        blocks(&Term::province("20"), &|i| i.is_multiple_of(2)),
        [512, 38]
    );
    assert_eq!(
        blocks(&Term::category(CATS[1] as i32), &|i| i % 3 == 1),
        [367]
    );
}

/// The cursors of a layout-3 posting block: varints, the first whole,
/// then distances.
fn block_cursors(v: &[u8]) -> Vec<u64> {
    let mut rest = v;
    let mut cursors: Vec<u64> = Vec::new();
    while !rest.is_empty() {
        let d = prost::encoding::decode_varint(&mut rest).unwrap();
        cursors.push(cursors.last().map_or(d, |l| l + d));
    }
    cursors
}

/// The id (`I`) and reference (`R`) keys of layouts 1 and 2 for the store
/// at `dir`, one per own entry, as those layouts wrote them.
fn old_index_keys(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let store = open(dir).unwrap();
    let mut keys = Vec::new();
    for i in 0..store.durable().feed_size {
        let e = store.get_by_own_index(i).unwrap().expect("entry");
        let cursor = e.cursor.to_be_bytes().to_vec();
        let mut id = vec![b'I'];
        id.extend_from_slice(&e.id.0);
        keys.push((id, cursor.clone()));
        if let Some(Payload::Alert(a)) = &e.body.payload {
            keys.push(([b"R", a.reference.as_bytes()].concat(), cursor));
        }
    }
    keys
}

/// The items of a packed value (`e`): a record and a proof each, both a
/// varint length and the bytes.
fn value_records(v: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rest = v;
    let field = |rest: &mut &[u8]| {
        let len = prost::encoding::decode_varint(rest).unwrap() as usize;
        let out = rest[..len].to_vec();
        *rest = &rest[len..];
        out
    };
    let mut out = Vec::new();
    while !rest.is_empty() {
        let record = field(&mut rest);
        out.push((record, field(&mut rest)));
    }
    out
}

/// Rewrites a store of this release into layout 4: every staged id (`j`
/// values: 32 digest bytes and the cursor each) in its bucket (`i`: sorted
/// items of the 30 digest bytes after the bucket's two and the cursor), no
/// `N` keys, format marker 4.
fn to_format_4(db: &sled::Db) {
    to_format_5(db);
    unstage(db, b'j', b'i');
    for k in db.scan_prefix(b"N").keys() {
        db.remove(k.unwrap()).unwrap();
    }
    db.insert(b"Mformat", &4u32.to_be_bytes()).unwrap();
}

/// Rewrites a store of this release into layout 5: no staged references
/// (`k`, put into their buckets) and no filter of references (`b`).
fn to_format_5(db: &sled::Db) {
    unstage(db, b'k', b'r');
    for k in db.scan_prefix(b"b").keys() {
        db.remove(k.unwrap()).unwrap();
    }
    db.insert(b"Mformat", &5u32.to_be_bytes()).unwrap();
}

/// Puts the keys staged under `staged` into their buckets under `bucket`
/// and removes the run values.
fn unstage(db: &sled::Db, staged: u8, bucket: u8) {
    for kv in db.scan_prefix([staged]) {
        let (k, v) = kv.unwrap();
        for item in v.chunks(40) {
            let bucket = [bucket, item[0], item[1]];
            let mut items: Vec<Vec<u8>> = db
                .get(bucket)
                .unwrap()
                .map(|v| v.chunks(38).map(<[u8]>::to_vec).collect())
                .unwrap_or_default();
            if !items.iter().any(|i| i[..30] == item[2..32]) {
                items.push(item[2..].to_vec());
            }
            items.sort();
            db.insert(bucket, items.concat()).unwrap();
        }
        db.remove(k).unwrap();
    }
}

/// Rewrites a store of this release into layout 3: one key per entry
/// record (`E` and its cursor) and per received entry's proof (`V` and its
/// cursor), no packed records, format marker 3.
fn to_format_3(db: &sled::Db) {
    to_format_4(db);
    let values: Vec<_> = db.scan_prefix(b"e").map(Result::unwrap).collect();
    assert!(!values.is_empty());
    for (k, v) in values {
        let first = u64::from_be_bytes(k[1..].try_into().unwrap());
        for (j, (record, proof)) in value_records(&v).into_iter().enumerate() {
            let cursor = (first + j as u64).to_be_bytes();
            db.insert([b"E".as_slice(), &cursor].concat(), record)
                .unwrap();
            if !proof.is_empty() {
                db.insert([b"V".as_slice(), &cursor].concat(), proof)
                    .unwrap();
            }
        }
        db.remove(k).unwrap();
    }
    db.insert(b"Mformat", &3u32.to_be_bytes()).unwrap();
}

/// Rewrites a store of this release into layout 2: layout 3
/// ([`to_format_3`]), one key per id and per reference (`old`, from
/// [`old_index_keys`]), no buckets and no index salt, posting blocks of 64
/// cursors of 8 bytes, format marker 2.
fn to_format_2(db: &sled::Db, old: &[(Vec<u8>, Vec<u8>)]) {
    to_format_3(db);
    for prefix in [b'i', b'r'] {
        let keys: Vec<_> = db
            .scan_prefix([prefix])
            .keys()
            .map(Result::unwrap)
            .collect();
        assert!(!keys.is_empty());
        for k in keys {
            db.remove(k).unwrap();
        }
    }
    db.remove(b"Mindex_salt").unwrap().expect("a salt");
    // Posting blocks: 8-byte cursors, 64 to a block, prefix `T`.
    let blocks: Vec<_> = db.scan_prefix(b"t").map(Result::unwrap).collect();
    assert!(!blocks.is_empty());
    for (k, v) in blocks {
        db.remove(&k).unwrap();
        let cursors = block_cursors(&v);
        for chunk in cursors.chunks(64) {
            let mut key = vec![b'T'];
            key.extend_from_slice(&k[1..k.len() - 8]);
            key.extend_from_slice(&chunk[0].to_be_bytes());
            let value: Vec<u8> = chunk.iter().flat_map(|c| c.to_be_bytes()).collect();
            db.insert(key, value).unwrap();
        }
    }
    for (k, v) in old {
        db.insert(k.as_slice(), v.as_slice()).unwrap();
    }
    db.insert(b"Mformat", &2u32.to_be_bytes()).unwrap();
}

/// Packed values of the own feed (`h` hashes, `f` positions) with the
/// old prefix and item width of each.
const PACKED: [(u8, u8, usize); 2] = [(b'h', b'H', 32), (b'f', b'F', 8)];

/// Rewrites a store of this release into layout 1, as releases up to
/// 0.2.0 wrote it: layout 2 ([`to_format_2`]), and one key per stored
/// hash (`H`) and per feed position (`F`), format marker 1.
fn to_format_1(db: &sled::Db, old: &[(Vec<u8>, Vec<u8>)]) {
    to_format_2(db, old);
    for (packed, old, width) in PACKED {
        let values: Vec<_> = db.scan_prefix([packed]).map(Result::unwrap).collect();
        assert!(!values.is_empty());
        for (k, v) in values {
            let n = u64::from_be_bytes(k[1..].try_into().unwrap());
            for (j, item) in v.chunks(width).enumerate() {
                let mut key = vec![old];
                key.extend_from_slice(&(n * 64 + j as u64).to_be_bytes());
                db.insert(key, item).unwrap();
            }
            db.remove(k).unwrap();
        }
    }
    db.insert(b"Mformat", &1u32.to_be_bytes()).unwrap();
}

/// Every key and value under the given prefixes.
fn raw_records(dir: &Path, prefixes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = open_raw(dir);
    prefixes
        .iter()
        .flat_map(|p| db.scan_prefix([*p]).map(Result::unwrap))
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

/// The store at `dir` serves exactly the feed `ids`: every entry by its
/// index, and the root and inclusion proofs of several sizes.
fn serves_the_feed(store: &Store, ids: &[Hash]) {
    let mut model = MemoryHashStore::new();
    for (i, id) in ids.iter().enumerate() {
        let e = store.get_by_own_index(i as u64).unwrap().expect("entry");
        assert_eq!(e.id.0, id.0, "feed index {i}");
        let by_id = store
            .get_by_id(&lienthong_core::entry::EntryId(id.0))
            .unwrap();
        assert_eq!(by_id.map(|e| e.cursor), Some(e.cursor), "id of {i}");
        model.append(*id).unwrap();
    }
    let n = ids.len() as u64;
    for size in [1, 63, 64, 65, 127, 128, 129, n - 1, n]
        .into_iter()
        .filter(|s| *s <= n)
    {
        let root = store.root_at(size).unwrap();
        let at = size / 2;
        let (leaf, proof) = store.inclusion_proof(at, size).unwrap();
        assert_eq!(leaf, ids[at as usize]);
        lienthong_log::verify_inclusion(at, size, leaf, &proof, root)
            .unwrap_or_else(|e| panic!("proof of {at} in {size}: {e}"));
    }
    assert_eq!(store.root_at(n).unwrap(), model.root().unwrap());
}

/// A store written in layout 1 (one key per stored hash and feed
/// position) is packed at open: the same feed is served, the packed values
/// are byte for byte what this release writes, the old keys are gone, and
/// the feed grows on from there.
#[test]
fn a_store_of_layout_1_is_upgraded_at_open() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 150, Category::Counterfeit, "24", "rượu giả");
    let packed = raw_records(dir.path(), b"hf");
    assert_eq!(packed.len(), 5 + 3, "296 hashes and 150 positions");
    let old = old_index_keys(dir.path());
    {
        let db = open_raw(dir.path());
        to_format_1(&db, &old);
        db.flush().unwrap();
    }
    let store = open(dir.path()).unwrap();
    let ids: Vec<Hash> = (0..150)
        .map(|i| Hash(store.get_by_own_index(i).unwrap().unwrap().id.0))
        .collect();
    serves_the_feed(&store, &ids);
    drop(store);
    assert_eq!(raw_records(dir.path(), b"hf"), packed);
    assert!(
        raw_records(dir.path(), b"HFIR").is_empty(),
        "old keys removed"
    );
    let buckets = raw_records(dir.path(), b"ir");
    assert_eq!(
        buckets.iter().map(|(_, v)| v.len() / 38).sum::<usize>(),
        300,
        "150 ids and 150 references in buckets"
    );
    assert_eq!(
        raw_records(dir.path(), b"M")
            .into_iter()
            .find(|(k, _)| k == b"Mformat")
            .map(|(_, v)| v),
        Some(lienthong_store::STORE_FORMAT.to_be_bytes().to_vec())
    );

    let store = open(dir.path()).unwrap();
    let w = writer(&store);
    let mut ids = ids;
    rt().block_on(async {
        for i in 150..170 {
            let a = w
                .append(alert(&format!("r{i}"), Category::Counterfeit, "24", "x"))
                .await
                .unwrap();
            assert_eq!(a.index, i);
            ids.push(Hash(store.get_by_own_index(i).unwrap().unwrap().id.0));
        }
        let again = w
            .append(alert("r5", Category::Counterfeit, "24", "x"))
            .await
            .unwrap();
        assert!(again.duplicate && again.index == 5, "{again:?}");
    });
    w.shutdown();
    drop(store);
    serves_the_feed(&open(dir.path()).unwrap(), &ids);
}

/// An upgrade cut off at any step finishes at the next open: killed while
/// packing (layout 1 still recorded, some values written, one of them
/// half), after recording layout 2 with old keys left, while bucketing
/// (layout 2, a salt and stray buckets written), or after recording
/// layout 3 with the old id and reference keys left.
#[test]
fn an_interrupted_upgrade_finishes_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 100, Category::Smuggling, "20", "thuốc lá");
    let packed = raw_records(dir.path(), b"hf");
    let expect_ids: Vec<Hash> = {
        let store = open(dir.path()).unwrap();
        (0..100)
            .map(|i| Hash(store.get_by_own_index(i).unwrap().unwrap().id.0))
            .collect()
    };
    let old = old_index_keys(dir.path());
    // Killed while packing: layout 1, the first hash value written, the
    // last position value half written.
    {
        let db = open_raw(dir.path());
        to_format_1(&db, &old);
        let (k, v) = &packed[0];
        db.insert(k, v.as_slice()).unwrap();
        let (k, v) = packed.last().unwrap();
        db.insert(k, &v[..8]).unwrap();
        db.flush().unwrap();
    }
    serves_the_feed(&open(dir.path()).unwrap(), &expect_ids);
    assert_eq!(raw_records(dir.path(), b"hf"), packed);
    assert!(raw_records(dir.path(), b"HF").is_empty());
    // Killed while removing the old keys: layout 2 recorded, both there.
    {
        let db = open_raw(dir.path());
        to_format_1(&db, &old);
        for (k, v) in &packed {
            db.insert(k, v.as_slice()).unwrap();
        }
        db.insert(b"Mformat", &2u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    serves_the_feed(&open(dir.path()).unwrap(), &expect_ids);
    assert_eq!(raw_records(dir.path(), b"hf"), packed);
    assert!(raw_records(dir.path(), b"HF").is_empty());
    let upgraded = |dir: &Path| {
        let store = open(dir).unwrap();
        serves_the_feed(&store, &expect_ids);
        for i in [0, 37, 99] {
            let e = store.get_by_reference(&format!("r{i}")).unwrap();
            assert_eq!(e.map(|e| e.body.index), Some(i), "reference r{i}");
        }
        drop(store);
        assert!(raw_records(dir, b"HFIR").is_empty(), "old keys removed");
        let items: usize = raw_records(dir, b"ir")
            .iter()
            .map(|(_, v)| v.len() / 38)
            .sum();
        assert_eq!(items, 200, "100 ids and 100 references, nothing stray");
    };
    // Killed while bucketing: layout 2, its salt made, and buckets with
    // items of no entry left (the run starts by removing every bucket).
    {
        let db = open_raw(dir.path());
        to_format_2(&db, &old);
        db.insert(b"Mindex_salt", &[9u8; 16]).unwrap();
        db.insert(b"i\x00\x00", vec![7u8; 38]).unwrap();
        db.insert(b"r\xff\xff", vec![7u8; 76]).unwrap();
        db.flush().unwrap();
    }
    upgraded(dir.path());
    // Killed while removing the old id and reference keys: layout 3
    // recorded, both there.
    {
        let db = open_raw(dir.path());
        for (k, v) in &old {
            db.insert(k.as_slice(), v.as_slice()).unwrap();
        }
        db.flush().unwrap();
    }
    upgraded(dir.path());
}

/// A damaged layout 1 store is refused at open, saying what is wrong, and
/// stays in layout 1 with its old keys (still readable by the release that
/// wrote it): a hole in its hashes or positions, a hash missing at the
/// end, or a changed leaf hash, which only the checks after packing see.
#[test]
fn a_damaged_layout_1_store_is_refused_and_stays_in_layout_1() {
    let last_hash = tlog_tiles::tlog::stored_hash_index(0, 70) - 1;
    let leaf_7 = tlog_tiles::tlog::stored_hash_index(0, 7);
    let cases: [(u8, u64, bool, String); 4] = [
        (b'H', 100, false, "'H' record 100 is missing".into()),
        (b'F', 7, false, "'F' record 7 is missing".into()),
        (
            b'H',
            last_hash,
            false,
            format!(
                "need {} stored hashes, but holds {last_hash}",
                last_hash + 1
            ),
        ),
        (
            b'H',
            leaf_7,
            true,
            "does not hash to its Merkle leaf".into(),
        ),
    ];
    for (old, index, flip, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 70, Category::Smuggling, "20", "thuốc lá");
        let old_keys = old_index_keys(dir.path());
        {
            let db = open_raw(dir.path());
            to_format_1(&db, &old_keys);
            let mut k = vec![old];
            k.extend_from_slice(&index.to_be_bytes());
            let v = db.remove(&k).unwrap().expect("record exists");
            if flip {
                let mut v = v.to_vec();
                v[0] ^= 1;
                db.insert(k, v).unwrap();
            }
            db.flush().unwrap();
        }
        let e = open(dir.path()).err().expect("refused");
        let text = e.to_string();
        assert!(
            matches!(e, StoreError::Integrity(_)) && text.contains(&says),
            "{text}"
        );
        let left = raw_records(dir.path(), &[b'M', old]);
        assert!(
            left.iter()
                .any(|(k, v)| k == b"Mformat" && v == &1u32.to_be_bytes()),
            "still layout 1"
        );
        assert!(
            left.iter().filter(|(k, _)| k[0] == old).count() > 60,
            "old keys kept"
        );
    }
}

/// A layout 2 store is upgraded at open: ids and references are bucketed
/// under a new salt, found again, and a known reference is still answered
/// as a duplicate. A damaged old key is refused by name, and the store
/// stays in layout 2 with its old keys. A missing id bucket in a store of
/// this layout is caught by the checks at open.
#[test]
fn a_store_of_layout_2_is_upgraded_and_a_damaged_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 120, Category::Counterfeit, "24", "rượu giả");
    let old = old_index_keys(dir.path());
    let ids: Vec<Hash> = old
        .iter()
        .filter(|(k, _)| k[0] == b'I')
        .map(|(k, _)| Hash(k[1..].try_into().unwrap()))
        .collect();
    let salt = |dir: &Path| {
        raw_records(dir, b"M")
            .into_iter()
            .find(|(k, _)| k == b"Mindex_salt")
            .map(|(_, v)| v)
    };
    let first_salt = salt(dir.path()).expect("a new store has a salt");
    let blocks = raw_records(dir.path(), b"t");
    {
        let db = open_raw(dir.path());
        to_format_2(&db, &old);
        db.flush().unwrap();
    }
    assert_eq!(
        raw_records(dir.path(), b"T").len(),
        blocks.len() * 2,
        "120 cursors: 2 old blocks per term"
    );
    let store = open(dir.path()).unwrap();
    let w = writer(&store);
    let again = rt().block_on(w.append(alert("r77", Category::Counterfeit, "24", "x")));
    w.shutdown();
    let again = again.unwrap();
    assert!(again.duplicate && again.index == 77, "{again:?}");
    drop(store);
    let store = open(dir.path()).unwrap();
    let by_cursor: std::collections::BTreeMap<u64, Hash> = (0..120)
        .map(|i| {
            let e = store.get_by_own_index(i).unwrap().unwrap();
            (e.cursor, Hash(e.id.0))
        })
        .collect();
    assert_eq!(by_cursor.len(), 120);
    serves_the_feed(&store, &ids);
    drop(store);
    assert!(
        raw_records(dir.path(), b"IR").is_empty(),
        "old keys removed"
    );
    assert_ne!(salt(dir.path()), Some(first_salt), "a new salt");

    // Damaged: an id key holding no cursor.
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 30, Category::Counterfeit, "24", "rượu giả");
    let mut old = old_index_keys(dir.path());
    old[10].1.truncate(7);
    {
        let db = open_raw(dir.path());
        to_format_2(&db, &old);
        db.flush().unwrap();
    }
    let e = open(dir.path()).err().expect("refused").to_string();
    assert!(e.contains("holds 7 bytes, not a cursor"), "{e}");
    let left = raw_records(dir.path(), b"MIR");
    assert!(
        left.iter()
            .any(|(k, v)| k == b"Mformat" && v == &2u32.to_be_bytes())
    );
    assert_eq!(
        left.iter().filter(|(k, _)| k[0] != b'M').count(),
        60,
        "old keys kept"
    );

    // This layout, the ids gone (from their buckets and the run of
    // staged ids).
    let e = open_after(|db| {
        for prefix in [b"i", b"j"] {
            for k in db.scan_prefix(prefix).keys() {
                db.remove(k.unwrap()).unwrap();
            }
        }
    })
    .err()
    .expect("refused")
    .to_string();
    assert!(e.contains("the id index finds None"), "{e}");
}

/// A store of layout 3 (one key per entry record) has its records packed
/// at open, byte for byte as this release writes them, also when a
/// cut-off upgrade left stray values or the old keys; one with a record
/// missing is refused and stays in layout 3 with its old keys.
#[test]
fn a_store_of_layout_3_is_upgraded_and_a_damaged_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 100, Category::Counterfeit, "24", "rượu giả");
    let packed = raw_records(dir.path(), b"e");
    assert_eq!(
        packed
            .iter()
            .map(|(_, v)| value_records(v).len())
            .collect::<Vec<_>>(),
        [[8; 12].as_slice(), &[4]].concat(),
        "100 records, 8 to a value"
    );
    let ids: Vec<Hash> = {
        let store = open(dir.path()).unwrap();
        (0..100)
            .map(|i| Hash(store.get_by_own_index(i).unwrap().unwrap().id.0))
            .collect()
    };
    let upgraded = |dir: &Path| {
        let store = open(dir).unwrap();
        serves_the_feed(&store, &ids);
        let e = store.get_by_reference("r42").unwrap().expect("r42");
        assert_eq!(e.body.index, 42);
        drop(store);
        assert_eq!(raw_records(dir, b"e"), packed);
        assert!(raw_records(dir, b"E").is_empty(), "old keys removed");
        assert_eq!(
            raw_records(dir, b"M")
                .into_iter()
                .find(|(k, _)| k == b"Mformat")
                .map(|(_, v)| v),
            Some(lienthong_store::STORE_FORMAT.to_be_bytes().to_vec())
        );
    };
    {
        let db = open_raw(dir.path());
        to_format_3(&db);
        db.flush().unwrap();
    }
    assert_eq!(raw_records(dir.path(), b"E").len(), 100);
    upgraded(dir.path());
    // Killed while packing: values of a cut-off run left, one of them
    // not even a value.
    {
        let db = open_raw(dir.path());
        to_format_3(&db);
        let (k, v) = &packed[1];
        db.insert(k, &v[..v.len() / 2]).unwrap();
        db.insert(b"e\x00\x00\x00\x00\x00\x00\x00\x05", &[1u8, 2][..])
            .unwrap();
        db.flush().unwrap();
    }
    upgraded(dir.path());
    // Killed while removing the old keys: layout 4 recorded, both there.
    {
        let db = open_raw(dir.path());
        to_format_3(&db);
        for (k, v) in &packed {
            db.insert(k, v.as_slice()).unwrap();
        }
        db.insert(b"Mformat", &4u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    upgraded(dir.path());

    // Damaged: the record of cursor 50 gone.
    {
        let db = open_raw(dir.path());
        to_format_3(&db);
        db.remove(b"E\x00\x00\x00\x00\x00\x00\x00\x32").unwrap();
        db.flush().unwrap();
    }
    let e = open(dir.path()).err().expect("refused").to_string();
    assert!(
        e.contains("the record of the entry at cursor 50 is missing (the next is at 51)"),
        "{e}"
    );
    let left = raw_records(dir.path(), b"ME");
    assert!(
        left.iter()
            .any(|(k, v)| k == b"Mformat" && v == &3u32.to_be_bytes())
    );
    assert_eq!(left.iter().filter(|(k, _)| k[0] == b'E').count(), 99);

    // Layout 3 has buckets, so its salt must be there: the upgrade to 4
    // makes none (and the salt is checked before anything else).
    {
        let db = open_raw(dir.path());
        db.remove(b"Mindex_salt").unwrap().expect("a salt");
        db.flush().unwrap();
    }
    let e = open(dir.path()).err().expect("refused").to_string();
    assert!(e.contains("the store has no index salt"), "{e}");
    assert!(
        raw_records(dir.path(), b"M")
            .iter()
            .all(|(k, _)| k != b"Mindex_salt")
    );

    // This layout, the newest records gone.
    let e = open_after(|db| {
        let k = db.scan_prefix(b"e").keys().next_back().unwrap().unwrap();
        db.remove(k).unwrap();
    })
    .err()
    .expect("refused")
    .to_string();
    assert!(e.contains("is missing"), "{e}");
}

/// Issue 9 item 6: indexes built by other code (a store of the previous
/// release has no `terms_version`; here every posting is gone too) are
/// rebuilt from the stored entries when the store opens.
#[test]
fn indexes_built_by_another_release_are_rebuilt_at_open() {
    let store = open_after(|db| {
        db.remove(b"Mterms_version").unwrap();
        let postings: Vec<_> = db.scan_prefix(b"t").keys().map(Result::unwrap).collect();
        assert!(!postings.is_empty());
        for k in postings {
            db.remove(k).unwrap();
        }
    })
    .unwrap();
    let page = store.query(&all_words("my pham", 100)).unwrap();
    assert_eq!(page.entries.len(), 8, "every entry found again");
}

#[test]
fn a_store_of_another_member_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).unwrap());
    let e = Store::reopen(
        &OpenOptions {
            dir: dir.path().to_path_buf(),
            member: "01".into(),
            origin: ORIGIN.into(),
            verifying_keys: vec![key().verifying_key()],
            cache_bytes: lienthong_store::DEFAULT_CACHE_BYTES,
        },
        Duration::from_secs(10),
    )
    .err()
    .expect("refused");
    assert!(e.to_string().contains("belongs to member \"20\""), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Model test: any AND of category / province / word filters returns
    /// exactly what a naive scan over the appended alerts returns, newest
    /// first, across pages.
    #[test]
    fn queries_match_a_naive_model(
        alerts in prop::collection::vec((0usize..3, 0usize..3, 0usize..4), 1..40),
        qcat in prop::option::of(0usize..3),
        qprov in prop::option::of(0usize..3),
        qword in prop::option::of(0usize..4),
        page in 1usize..7,
        chunk in 1usize..16,
    ) {
        const CATS: [Category; 3] = [Category::Smuggling, Category::Counterfeit, Category::FoodSafety];
        const PROVS: [&str; 3] = ["01", "20", "24"];
        const TITLES: [&str; 4] = ["Hàng giả", "hang gia va thuoc la", "Thuốc lá lậu", "Gà đông lạnh"];
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        let w = std::sync::Arc::new(writer(&store));
        // Submitted in concurrent chunks, so group commits hold several
        // entries and posting blocks several cursors.
        let cursors: Vec<u64> = rt().block_on(async {
            let mut out = Vec::new();
            for (n, chunk) in alerts.chunks(chunk).enumerate() {
                let tasks: Vec<_> = chunk.iter().enumerate().map(|(k, (c, p, t))| {
                    let w = w.clone();
                    let e = alert(&format!("r{n}-{k}"), CATS[*c], PROVS[*p], TITLES[*t]);
                    tokio::spawn(async move { w.append(e).await.unwrap().cursor })
                }).collect();
                for t in tasks { out.push(t.await.unwrap()); }
            }
            out
        });
        let mut groups = Vec::new();
        if let Some(c) = qcat { groups.push(vec![Term::category(CATS[c] as i32), Term::category(CATS[(c + 1) % 3] as i32)]); }
        if let Some(p) = qprov { groups.push(vec![Term::province(PROVS[p])]); }
        if let Some(t) = qword { groups.extend(query_words("gia").into_iter().take(usize::from(t > 1)).map(|w| vec![w])); }
        let mut expected: Vec<u64> = alerts.iter().zip(&cursors).filter(|((c, p, t), _)| {
            qcat.is_none_or(|q| q == *c || (q + 1) % 3 == *c) && qprov.is_none_or(|q| q == *p)
                && (qword.is_none_or(|q| q <= 1) || lienthong_core::text::words(TITLES[*t]).contains(&"gia".to_owned()))
        }).map(|(_, cursor)| *cursor).collect();
        expected.sort_unstable_by(|a, b| b.cmp(a));
        let mut got = Vec::new();
        let mut before = None;
        loop {
            let r = store.query(&Query { groups: groups.clone(), before_cursor: before, limit: page, max_scan: 1000, ..Query::default() }).unwrap();
            got.extend(r.entries.iter().map(|e| e.cursor));
            match r.next_before { Some(b) => before = Some(b), None => break }
        }
        prop_assert_eq!(got, expected);
    }
}

/// A peer's feed of `n` alerts for members 20 and 24, and its checkpoint.
fn peer_feed(
    n: u64,
) -> (
    Vec<lienthong_core::entry::VerifiedEntry>,
    MemoryHashStore,
    String,
) {
    let peer_key = SigningKey::from_bytes(&[24; 32]);
    let mut tree = MemoryHashStore::new();
    let entries: Vec<_> = (0..n)
        .map(|i| {
            let body = lienthong_core::proto::EntryBody {
                format: lienthong_core::entry::ENTRY_FORMAT,
                author: "24".into(),
                index: i,
                created_unix_ms: 1_795_000_000_000,
                audience: vec!["20".into(), "24".into()],
                manifest_version: 1,
                agreement_hash: vec![],
                handling: 0,
                response_deadline_hours: 0,
                payload: alert(
                    &format!("bn-{i}"),
                    Category::Counterfeit,
                    "24",
                    "Mỹ phẩm giả từ Bắc Ninh",
                )
                .payload
                .into(),
            };
            lienthong_core::entry::sign_entry(body, &peer_key)
        })
        .collect();
    for e in &entries {
        tree.append(Hash(e.id().0)).unwrap();
    }
    let origin = "lienthong.test/t/24";
    let note = lienthong_log::sign_checkpoint(
        &lienthong_log::TreeHead {
            origin: origin.into(),
            size: n,
            root: tree.root().unwrap(),
        },
        &NoteSigner::new(origin, peer_key).unwrap(),
    )
    .unwrap();
    (entries, tree, note)
}

/// Entry `i` of 24's feed of `entries` (see `peer_feed`), delivered to
/// 20 and verified as a subscriber does.
fn delivered(
    entries: &[lienthong_core::entry::VerifiedEntry],
    tree: &MemoryHashStore,
    note: &str,
    i: u64,
) -> lienthong_core::delivery::AcceptedDelivery {
    use lienthong_core::delivery::{AuthorKeys, Delivery, verify_delivery};
    let author = AuthorKeys::single(
        "24",
        "lienthong.test/t/24",
        SigningKey::from_bytes(&[24; 32]).verifying_key(),
    );
    let proof = lienthong_log::inclusion_proof(i, entries.len() as u64, tree).unwrap();
    verify_delivery(
        Delivery {
            envelope: entries[i as usize].envelope(),
            checkpoint: note.as_bytes(),
            inclusion_proof: &proof,
        },
        &author,
        "20",
        i,
    )
    .unwrap()
}

/// Issue 7: entries of one author received in one group commit share one
/// receipt (its first entry, then `more` in index order): every entry is
/// acknowledged exactly once, by far fewer receipts than entries.
#[test]
fn entries_received_in_one_group_share_one_receipt() {
    const N: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let (entries, tree, note) = peer_feed(N);
    let store = open(dir.path()).unwrap();
    let w = writer(&store);
    // Built first, then queued without waiting, as a subscriber does:
    // they share groups. (Built while queueing, a slow build let the
    // writer take them one at a time.)
    let deliveries: Vec<_> = (0..N)
        .map(|i| delivered(&entries, &tree, &note, i))
        .collect();
    let pending: Vec<_> = deliveries
        .into_iter()
        .map(|d| w.receive_queued(d, vec![], 1).unwrap())
        .collect();
    rt().block_on(async {
        for rx in pending {
            rx.await.unwrap().unwrap();
        }
    });
    w.shutdown();
    drop(store);
    let store = open(dir.path()).unwrap();
    let receipts = store.durable().feed_size;
    assert!(
        receipts < N / 4,
        "{receipts} receipts for {N} entries queued at once"
    );
    let mut acknowledged = Vec::new();
    for i in 0..receipts {
        let e = store.get_by_own_index(i).unwrap().unwrap();
        let Some(Payload::Receipt(r)) = e.body.payload else {
            panic!("entry {i} is not a receipt")
        };
        assert_eq!(r.author, "24");
        assert_eq!(e.body.audience, vec!["20".to_owned(), "24".to_owned()]);
        acknowledged.push((r.index, r.entry_id, r.checkpoint_size));
        acknowledged.extend(
            r.more
                .into_iter()
                .map(|m| (m.index, m.entry_id, m.checkpoint_size)),
        );
    }
    let expected: Vec<_> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (i as u64, e.id().0.to_vec(), N))
        .collect();
    assert_eq!(acknowledged, expected, "each entry once, in order");

    // Each received entry keeps the proof it came with, packed with its
    // record; a receipt has none. A layout-3 store (one `V` key per
    // proof) keeps them through the upgrade.
    let proofs_kept = |store: &Store| {
        for (i, e) in entries.iter().enumerate() {
            let stored = store
                .get_by_id(&lienthong_core::entry::EntryId(e.id().0))
                .unwrap()
                .expect("received");
            let proof = lienthong_log::inclusion_proof(i as u64, N, &tree).unwrap();
            assert_eq!(
                store.received_proof(stored.cursor).unwrap(),
                Some((N, proof)),
                "entry {i}"
            );
        }
        let receipt = store.get_by_own_index(0).unwrap().unwrap();
        assert_eq!(store.received_proof(receipt.cursor).unwrap(), None);
    };
    proofs_kept(&store);
    drop(store);
    {
        let db = open_raw(dir.path());
        to_format_3(&db);
        db.flush().unwrap();
    }
    assert_eq!(raw_records(dir.path(), b"V").len(), N as usize);
    proofs_kept(&open(dir.path()).unwrap());
    assert!(
        raw_records(dir.path(), b"EV").is_empty(),
        "old keys removed"
    );
}

/// Opens the store at `dir`, appends one alert, then receives the entries
/// `order` names, one group each: each is new the first time it comes
/// (and answered with its index), known after. Closes the store.
fn alert_then_receive(
    dir: &Path,
    deliver: &dyn Fn(u64) -> lienthong_core::delivery::AcceptedDelivery,
    order: &[u64],
) {
    let store = open(dir).unwrap();
    let w = writer(&store);
    rt().block_on(async {
        w.append(alert("own-1", Category::Smuggling, "20", "thuốc lá"))
            .await
            .unwrap();
        for (n, &i) in order.iter().enumerate() {
            let a = w.receive(deliver(i), vec![], 1).await.unwrap();
            assert_eq!(a.duplicate, order[..n].contains(&i), "entry {i}");
            assert_eq!(a.index, i);
        }
    });
    w.shutdown();
}

/// A feed grown by receipts only waits for `receipt_interval`, not the
/// (short) checkpoint interval; an own entry after them is checkpointed
/// at the checkpoint interval again, receipts and all.
#[test]
fn receipts_alone_wait_for_the_receipt_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (entries, tree, note) = peer_feed(2);
    let store = open(dir.path()).unwrap();
    let w = writer_with(
        &store,
        WriterConfig {
            checkpoint_interval: Duration::from_millis(10),
            receipt_interval: Duration::from_secs(3600),
            ..WriterConfig::default()
        },
    );
    let covered = |size: u64| {
        let store = store.clone();
        let mut durable = store.subscribe();
        async move {
            while store.latest_checkpoint().map_or(0, |c| c.size) < size {
                durable.changed().await.unwrap();
            }
        }
    };
    rt().block_on(async {
        let a = w
            .append(alert("own-1", Category::Smuggling, "20", "x"))
            .await
            .unwrap();
        covered(a.index + 1).await;
        // Two receipts (one per group: each delivery awaited alone).
        for i in 0..2 {
            w.receive(delivered(&entries, &tree, &note, i), vec![], 1)
                .await
                .unwrap();
        }
        assert_eq!(store.durable().feed_size, 3);
        // Thirty checkpoint intervals: nothing signed for the receipts.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(store.latest_checkpoint().unwrap().size, 1);
        // An own entry: all of it at the next checkpoint.
        let b = w
            .append(alert("own-2", Category::Smuggling, "20", "x"))
            .await
            .unwrap();
        assert_eq!(b.index, 3);
        tokio::time::timeout(Duration::from_secs(60), covered(4))
            .await
            .expect("the own entry is checkpointed, with the receipts before it");
        // One more right after that checkpoint: most likely written before
        // the next is due, so the writer's timer must know it is own.
        w.append(alert("own-3", Category::Smuggling, "20", "x"))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), covered(5))
            .await
            .expect("an own entry is checkpointed at the checkpoint interval");
    });
    w.shutdown();
}

/// Issue 4 item 3: a verified peer entry is stored with its receipt in one
/// durable write; a second delivery of it stores nothing.
#[test]
fn a_received_entry_is_stored_with_its_receipt_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (entries, tree, note) = peer_feed(3);
    let deliver = |i: u64| delivered(&entries, &tree, &note, i);
    alert_then_receive(dir.path(), &deliver, &[0, 1, 2, 1]);
    let store = open(dir.path()).unwrap();
    assert_eq!(store.replication_cursor("24").unwrap(), 3);
    assert_eq!(store.replication_cursor("01").unwrap(), 0);
    // Own feed: 1 alert + 3 receipts; 3 received entries stored as verified.
    assert_eq!(store.durable().feed_size, 4);
    for i in 0..3u64 {
        let got = store
            .get_by_id(&entries[i as usize].id())
            .unwrap()
            .expect("stored");
        assert_eq!(got.verification, lienthong_store::Verification::Verified);
        assert_eq!(got.body.author, "24");
        let receipt = store.get_by_own_index(i + 1).unwrap().unwrap();
        let Some(Payload::Receipt(r)) = receipt.body.payload else {
            panic!("not a receipt")
        };
        assert_eq!(
            (
                r.author.as_str(),
                r.index,
                r.entry_id.as_slice(),
                r.checkpoint_size
            ),
            ("24", i, entries[i as usize].id().0.as_slice(), 3)
        );
        assert_eq!(
            receipt.body.audience,
            vec!["20".to_owned(), "24".to_owned()]
        );
    }
    // Received entries are searchable like own ones.
    let page = store
        .query(&Query {
            groups: vec![vec![Term::author("24")]],
            limit: 10,
            max_scan: 100,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(page.entries.len(), 3);
    let page = store.query(&all_words("my pham", 10)).unwrap();
    assert_eq!(page.entries.len(), 3);

    // After a restart (the writer reads the replication cursor afresh),
    // entries below the cursor delivered again are still known, in a
    // group of their own or mixed in with each other.
    let w = writer(&store);
    rt().block_on(async {
        let again = w.receive(deliver(2), vec![], 1).await.unwrap();
        assert!(again.duplicate);
        assert_eq!(again.index, 2);
        let both = [
            w.receive_queued(deliver(0), vec![], 1).unwrap(),
            w.receive_queued(deliver(1), vec![], 1).unwrap(),
        ];
        for (i, rx) in both.into_iter().enumerate() {
            let a = rx.await.unwrap().unwrap();
            assert!(a.duplicate, "entry {i} stored twice");
        }
    });
    w.shutdown();
    assert_eq!(store.durable().feed_size, 4, "no new receipts");
    assert_eq!(store.replication_cursor("24").unwrap(), 3);
}

/// A store of layout 4 (ids only in buckets, no `N`) gets each author's
/// highest received index counted from its records at open, not taken
/// from the replication cursor, which older releases could leave lower:
/// an entry delivered again is still known, and new ones are stored once.
#[test]
fn a_store_of_layout_4_counts_what_it_holds_of_each_author() {
    let dir = tempfile::tempdir().unwrap();
    let (entries, tree, note) = peer_feed(6);
    let deliver = |i: u64| delivered(&entries, &tree, &note, i);
    alert_then_receive(dir.path(), &deliver, &[0, 1, 3]);
    {
        let db = open_raw(dir.path());
        assert!(db.scan_prefix(b"j").next().is_some(), "ids staged");
        assert_eq!(
            db.get(b"N24").unwrap().as_deref(),
            Some(&4u64.to_be_bytes()[..])
        );
        to_format_4(&db);
        // As a release before 2026-12-05 could leave it.
        db.insert(b"P24", &2u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store = open(dir.path()).unwrap();
    assert_eq!(store.replication_cursor("24").unwrap(), 2, "left as it was");
    drop(store);
    {
        let db = open_raw(dir.path());
        assert_eq!(
            db.get(b"N24").unwrap().as_deref(),
            Some(&4u64.to_be_bytes()[..])
        );
        assert_eq!(db.get(b"N20").unwrap(), None, "own entries not counted");
        assert_eq!(
            db.get(b"Mformat").unwrap().as_deref(),
            Some(&lienthong_store::STORE_FORMAT.to_be_bytes()[..])
        );
    }
    let store = open(dir.path()).unwrap();
    let w = writer(&store);
    rt().block_on(async {
        // Past the replication cursor but stored: known.
        assert!(w.receive(deliver(3), vec![], 1).await.unwrap().duplicate);
        assert!(w.receive(deliver(1), vec![], 1).await.unwrap().duplicate);
        for i in [2, 4, 5] {
            assert!(!w.receive(deliver(i), vec![], 1).await.unwrap().duplicate);
            assert!(w.receive(deliver(i), vec![], 1).await.unwrap().duplicate);
        }
    });
    w.shutdown();
    for e in &entries {
        assert!(store.get_by_id(&e.id()).unwrap().is_some());
    }
    // 1 alert and a receipt for each of the 6 entries.
    assert_eq!(store.durable().feed_size, 7);
    assert_eq!(store.replication_cursor("24").unwrap(), 6);
}

/// The writer reports every group that wrote something: the entries of
/// all reports are the entries stored, own and received (with receipts);
/// a repeated reference writes nothing and is not reported.
#[test]
fn every_group_commit_is_reported_with_its_entries_and_times() {
    use lienthong_store::{CommitObserver, CommitStats};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let seen: Arc<std::sync::Mutex<Vec<CommitStats>>> = Arc::default();
    let sink = seen.clone();
    let w = writer_with(
        &store,
        WriterConfig {
            // No checkpoint by the timer: a checkpoint-only group would
            // be reported between the count and the duplicate below.
            // Shutdown signs the last one.
            checkpoint_interval: Duration::from_secs(3600),
            on_commit: Some(CommitObserver(Arc::new(move |c: &CommitStats| {
                sink.lock().unwrap().push(*c);
            }))),
            ..WriterConfig::default()
        },
    );
    let (entries, tree, note) = peer_feed(3);
    rt().block_on(async {
        for i in 0..10 {
            w.append(alert(&format!("o{i}"), Category::Smuggling, "20", "x"))
                .await
                .unwrap();
        }
        let reports = seen.lock().unwrap().len();
        assert!(
            w.append(alert("o3", Category::Smuggling, "20", "x"))
                .await
                .unwrap()
                .duplicate
        );
        assert_eq!(seen.lock().unwrap().len(), reports, "nothing written");
        for i in 0..3 {
            w.receive(delivered(&entries, &tree, &note, i), vec![], 1)
                .await
                .unwrap();
        }
    });
    w.shutdown();
    let seen = seen.lock().unwrap();
    let written: usize = seen.iter().map(|c| c.entries).sum();
    // 10 alerts, 3 received entries and their receipts (one or more).
    let durable = store.durable();
    assert_eq!(written as u64, durable.next_cursor, "{seen:?}");
    assert!(durable.feed_size >= 11 && durable.next_cursor == durable.feed_size + 3);
    assert!(
        seen.iter()
            .all(|c| c.write <= c.total && c.write > Duration::ZERO)
    );
    let last = seen.last().unwrap();
    assert!(
        last.checkpoint && last.entries == 0,
        "shutdown signs the last checkpoint in a group of its own: {last:?}"
    );
    assert!(seen[..seen.len() - 1].iter().all(|c| !c.checkpoint));
}

/// A store of layout 5 (references only in buckets, no filter) gets the
/// filter of its references built at open: each reference submitted again
/// is known, a new one is new, and the filter is on disk.
#[test]
fn a_store_of_layout_5_gets_its_filter_of_references() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 40, Category::Smuggling, "15", "thuốc lá");
    {
        let db = open_raw(dir.path());
        assert!(db.scan_prefix(b"k").next().is_some(), "references staged");
        assert!(
            db.scan_prefix(b"b").next().is_none(),
            "no filter written yet"
        );
        to_format_5(&db);
        // Two of the 40 salted references share a bucket about one time
        // in 80 (40·39/2 pairs over 65,536 buckets): count the items of
        // 38 bytes in the buckets, not the buckets.
        let items: usize = db
            .scan_prefix(b"r")
            .values()
            .map(|v| v.unwrap().len() / 38)
            .sum();
        assert_eq!(items, 40);
        db.flush().unwrap();
    }
    let store = open(dir.path()).unwrap();
    let w = writer(&store);
    rt().block_on(async {
        for i in 0..40 {
            let a = w
                .append(alert(&format!("r{i}"), Category::Smuggling, "15", "x"))
                .await
                .unwrap();
            assert!(a.duplicate && a.index == i, "r{i}");
        }
        let a = w
            .append(alert("r40", Category::Smuggling, "15", "x"))
            .await
            .unwrap();
        assert!(!a.duplicate && a.index == 40);
    });
    w.shutdown();
    drop(store);
    let db = open_raw(dir.path());
    assert_eq!(
        db.get(b"Mformat").unwrap().as_deref(),
        Some(&lienthong_store::STORE_FORMAT.to_be_bytes()[..])
    );
    // A whole generation: its chunks and its count.
    assert_eq!(db.scan_prefix(b"b").count(), 33);
}

/// Entries delivered out of order in one group (a stream that started
/// again behind one still queued) never move the replication cursor
/// back: it stays one past the highest index stored.
#[test]
fn the_replication_cursor_never_moves_back() {
    let dir = tempfile::tempdir().unwrap();
    let (entries, tree, note) = peer_feed(4);
    let deliver = |i: u64| delivered(&entries, &tree, &note, i);
    let store = open(dir.path()).unwrap();
    let w = writer(&store);
    rt().block_on(async {
        let order = [
            w.receive_queued(deliver(3), vec![], 1).unwrap(),
            w.receive_queued(deliver(1), vec![], 1).unwrap(),
        ];
        for rx in order {
            assert!(!rx.await.unwrap().unwrap().duplicate);
        }
    });
    assert_eq!(store.replication_cursor("24").unwrap(), 4);
    rt().block_on(async {
        // Below the cursor and stored: known. Below it and not stored
        // (the writer looks it up rather than trusting the cursor): stored.
        assert!(w.receive(deliver(3), vec![], 1).await.unwrap().duplicate);
        assert!(!w.receive(deliver(2), vec![], 1).await.unwrap().duplicate);
        assert!(w.receive(deliver(2), vec![], 1).await.unwrap().duplicate);
    });
    w.shutdown();
    assert_eq!(store.replication_cursor("24").unwrap(), 4);
    for e in &entries[1..] {
        assert!(store.get_by_id(&e.id()).unwrap().is_some());
    }
}

/// Regression: two members acknowledged each other's receipts forever (a
/// receipt of a receipt of a receipt…). A received receipt is stored but
/// never acknowledged.
#[test]
fn receipts_of_receipts_ping_pong() {
    use lienthong_core::delivery::{AuthorKeys, Delivery, verify_delivery};
    let peer_key = SigningKey::from_bytes(&[24; 32]);
    let body = lienthong_core::proto::EntryBody {
        format: lienthong_core::entry::ENTRY_FORMAT,
        author: "24".into(),
        index: 0,
        created_unix_ms: 1_795_000_000_000,
        audience: vec!["20".into(), "24".into()],
        manifest_version: 1,
        agreement_hash: vec![],
        handling: 0,
        response_deadline_hours: 0,
        payload: Some(Payload::Receipt(lienthong_core::proto::Receipt {
            author: "20".into(),
            index: 0,
            entry_id: vec![1; 32],
            checkpoint_size: 1,
            more: vec![],
        })),
    };
    let receipt = lienthong_core::entry::sign_entry(body, &peer_key);
    let mut tree = MemoryHashStore::new();
    tree.append(Hash(receipt.id().0)).unwrap();
    let origin = "lienthong.test/t/24";
    let note = lienthong_log::sign_checkpoint(
        &lienthong_log::TreeHead {
            origin: origin.into(),
            size: 1,
            root: tree.root().unwrap(),
        },
        &NoteSigner::new(origin, peer_key.clone()).unwrap(),
    )
    .unwrap();
    let author = AuthorKeys::single("24", origin, peer_key.verifying_key());
    let proof = lienthong_log::inclusion_proof(0, 1, &tree).unwrap();
    let accepted = verify_delivery(
        Delivery {
            envelope: receipt.envelope(),
            checkpoint: note.as_bytes(),
            inclusion_proof: &proof,
        },
        &author,
        "20",
        0,
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let w = writer(&store);
    rt().block_on(async { w.receive(accepted, vec![], 1).await.unwrap() });
    assert!(
        store.get_by_id(&receipt.id()).unwrap().is_some(),
        "the receipt is stored"
    );
    assert_eq!(store.durable().feed_size, 0, "and not acknowledged");
}

/// Witness records and evidence survive a reopen; cosignatures are served
/// appended to the checkpoint note.
#[test]
fn witness_state_cosignatures_and_evidence_are_durable() {
    use lienthong_core::proto::{EvidenceKind, EvidenceRecord};
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 3, Category::Smuggling, "15", "x");
    {
        let store = open(dir.path()).unwrap();
        assert_eq!(store.witnessed("24").unwrap(), None);
        store.set_witnessed("24", "note of 24\n").unwrap();
        // A round's answers go in together; none before the round.
        store.add_cosignatures(3, &[]).unwrap();
        assert_eq!(store.latest_cosigned().unwrap(), None);
        store
            .add_cosignatures(3, &[("24", "— w/24 AAAA\n"), ("31", "— w/31 BBBB\n")])
            .unwrap();
        for i in 0..3 {
            let id = store
                .add_evidence(EvidenceRecord {
                    kind: EvidenceKind::Equivocation as i32,
                    member: "31".into(),
                    reason: format!("r{i}"),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(id, Some(i + 1));
        }
    }
    let store = open(dir.path()).unwrap();
    assert_eq!(
        store.witnessed("24").unwrap().as_deref(),
        Some("note of 24\n")
    );
    let (size, note) = store.latest_cosigned_note().unwrap().unwrap();
    assert_eq!(size, 3);
    assert!(note.ends_with("— w/24 AAAA\n— w/31 BBBB\n"), "{note}");
    assert_eq!(store.latest_cosigned().unwrap(), Some((3, 2)));
    let all = store.evidence(0, 10).unwrap();
    assert_eq!(
        all.iter()
            .map(|e| (e.id, e.reason.as_str()))
            .collect::<Vec<_>>(),
        [(1, "r0"), (2, "r1"), (3, "r2")]
    );
    assert_eq!(store.evidence(2, 10).unwrap().len(), 1);
    assert_eq!(store.evidence(0, 1).unwrap().len(), 1);
    // Counted without reading a refused entry's envelope.
    assert_eq!(store.evidence_counts().unwrap(), (3, 3));
    store
        .add_evidence(EvidenceRecord {
            kind: EvidenceKind::RefusedEntry as i32,
            envelope: vec![7; 1 << 20],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.evidence_counts().unwrap(), (4, 3));
}

/// Subscribers, gossip and witness calls keep evidence at the same time:
/// each piece gets an id of its own, none written over another.
#[test]
fn evidence_kept_concurrently_gets_distinct_ids() {
    use lienthong_core::proto::{EvidenceKind, EvidenceRecord};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let (threads, each) = (8, 25);
    let ids: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    (0..each)
                        .map(|i| {
                            store
                                .add_evidence(EvidenceRecord {
                                    kind: EvidenceKind::Equivocation as i32,
                                    reason: format!("{t}/{i}"),
                                    ..Default::default()
                                })
                                .unwrap()
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let distinct: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        threads * each,
        "ids handed out twice: {ids:?}"
    );
    let kept = store.evidence(0, 1000).unwrap();
    assert_eq!(kept.len(), threads * each);
    let reasons: std::collections::BTreeSet<&str> =
        kept.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons.len(),
        threads * each,
        "a piece of evidence was written over"
    );
}

/// The delivery read (`deliverables`) gives, for every own entry (alerts
/// with three audiences and withheld openings, receipts, a retraction),
/// the same envelope, audience and openings as the full read, in feed
/// order, and stops where the durable feed does.
#[test]
fn deliverables_match_the_full_read() {
    use lienthong_core::proto::{Opening, OpeningSet, Withheld};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let w = writer(&store);
    rt().block_on(async {
        for i in 0..150u32 {
            let mut e = alert(&format!("d{i}"), Category::Smuggling, "20", "thuốc lá lậu");
            e.audience = match i % 3 {
                0 => vec![],
                1 => vec!["01".into(), "24".into()],
                _ => vec!["15".into()],
            };
            if i % 4 == 0 {
                e.openings = OpeningSet {
                    openings: vec![Opening {
                        field: "person.citizen_id".into(),
                        salt: vec![7; 32],
                        value: format!("0010{i:08}"),
                    }],
                    withheld: vec![Withheld {
                        recipient: "24".into(),
                        fields: vec!["person.citizen_id".into()],
                    }],
                };
            }
            w.append(e).await.unwrap();
        }
        // Receipts of a peer's entries, and a retraction, in the own feed.
        let (entries, tree, note) = peer_feed(3);
        for i in 0..3 {
            w.receive(delivered(&entries, &tree, &note, i), vec![], 1)
                .await
                .unwrap();
        }
        let first = store.get_by_own_index(0).unwrap().unwrap();
        let mut retraction = alert("d-retract", Category::Smuggling, "20", "-");
        retraction.reference = None;
        retraction.payload = Payload::Retraction(lienthong_core::proto::Retraction {
            target: first.id.0.to_vec(),
            reason: "nhập nhầm".into(),
            replaced_by: vec![],
        });
        w.append(retraction).await.unwrap();
    });
    w.shutdown();
    let size = store.durable().feed_size;
    assert_eq!(size, 154);
    for (from, end) in [(0, 154), (0, 1000), (37, 101), (149, 153), (154, 400)] {
        let (got, next) = store.deliverables(from, end, None).unwrap();
        let want: Vec<_> = (from..end.min(size))
            .map(|i| store.get_by_own_index(i).unwrap().unwrap())
            .collect();
        assert_eq!(got.len(), want.len(), "[{from}, {end})");
        assert_eq!(next, end.min(size).max(from));
        for (g, e) in got.iter().zip(&want) {
            assert_eq!(g.index, e.body.index);
            assert_eq!(g.envelope, e.envelope);
            assert_eq!(g.audience, e.body.audience);
            assert!(!g.audience.is_empty());
            assert_eq!(g.openings, e.openings);
        }
        // For one member: exactly the entries addressed to it, and the
        // same place to go on from.
        for member in ["15", "24", "20", "99"] {
            let (to, to_next) = store.deliverables(from, end, Some(member)).unwrap();
            let want: Vec<_> = got
                .iter()
                .filter(|d| d.audience.iter().any(|m| m == member))
                .collect();
            assert_eq!(
                to.iter().collect::<Vec<_>>(),
                want,
                "{member} [{from}, {end})"
            );
            assert_eq!(to_next, next);
        }
    }
    // The comparison covered openings, receipts and a retraction.
    let full: Vec<_> = (0..size)
        .map(|i| store.get_by_own_index(i).unwrap().unwrap())
        .collect();
    assert!(full[0].retracted_by.is_some());
    let receipts = full
        .iter()
        .filter(|e| matches!(e.body.payload, Some(Payload::Receipt(_))))
        .count();
    assert_eq!(receipts, 3);
    assert!(matches!(
        full[153].body.payload,
        Some(Payload::Retraction(_))
    ));
    let (with, _) = store.deliverables(0, 150, None).unwrap();
    assert_eq!(
        with.iter()
            .filter(|d| !d.openings.withheld.is_empty())
            .count(),
        38
    );
    assert_eq!(
        with.iter()
            .filter(|d| d.audience.iter().any(|m| m == "15"))
            .count(),
        50
    );
}

/// A page of the own feed stops at its byte budget (8 bytes of framing
/// counted per envelope) before it reads further, but always holds the
/// first envelope, however large.
#[test]
fn feed_envelopes_stop_at_their_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5, Category::Smuggling, "15", "x");
    let store = open(dir.path()).unwrap();
    let all = store.feed_envelopes(0, 5, 1000, usize::MAX).unwrap();
    assert_eq!(all.len(), 5);
    let two = all[0].len() + all[1].len() + 16;
    let page = store.feed_envelopes(0, 5, 1000, two).unwrap();
    assert_eq!(page, all[..2]);
    assert_eq!(store.feed_envelopes(0, 5, 1000, two - 1).unwrap(), all[..1]);
    assert_eq!(store.feed_envelopes(0, 5, 1000, 0).unwrap(), all[..1]);
    assert_eq!(
        store.feed_envelopes(3, 5, 1, usize::MAX).unwrap(),
        all[3..4]
    );
}
