//! Checks that need every bundle read: consistency proofs, forks between
//! checkpoints from different places, which checkpoints are proven
//! consistent with which, and the delivery cross-check.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lienthong_log::Hash;

use crate::report::{Check, Deliveries, FeedSummary, KeyUse, Location, SegmentSummary};
use crate::verify::VerifyOptions;
use crate::verify::seq::{IS_RECEIPT, Segment, Seq, VERIFIED};

type Head = (u64, [u8; 32]);

impl Seq<'_> {
    /// Runs the final checks and returns the per-feed summaries and the
    /// delivery counts.
    pub fn finish(&mut self, opts: &VerifyOptions) -> (Vec<FeedSummary>, Deliveries) {
        let proven = self.check_proofs();
        self.check_forks();
        self.check_received_against_segments();
        let groups = self.link_groups(&proven);
        let deliveries = self.cross_check(opts);
        (self.feed_summaries(&groups), deliveries)
    }

    fn segments_of<'s>(&'s self, author: &'s str) -> impl Iterator<Item = (usize, &'s Segment)> {
        self.segments
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.author == author)
    }

    /// Roots of `author`'s signed checkpoints of `size`, from anywhere.
    fn signed_roots(&self, author: &str, size: u64) -> Vec<Hash> {
        let mut out: Vec<Hash> = self
            .refs
            .get(author)
            .and_then(|m| m.get(&size))
            .map(|v| v.iter().filter(|r| r.signed).map(|r| r.root).collect())
            .unwrap_or_default();
        for (_, s) in self.segments_of(author) {
            if let Some(r) = s.root_at(size)
                && !out.contains(&r)
            {
                out.push(r);
            }
        }
        out
    }

    /// Verifies each consistency proof against the checkpoints it names;
    /// returns the proven pairs.
    fn check_proofs(&mut self) -> Vec<(String, Head, Head)> {
        let mut proven = Vec::new();
        let proofs = std::mem::take(&mut self.proofs);
        for p in &proofs {
            let at = p.at.clone().author(&p.author).size(p.new_size);
            let olds = self.signed_roots(&p.author, p.old_size);
            let news = self.signed_roots(&p.author, p.new_size);
            let missing: Vec<u64> = [(p.old_size, &olds), (p.new_size, &news)]
                .iter()
                .filter(|(_, r)| r.is_empty())
                .map(|(s, _)| *s)
                .collect();
            if !missing.is_empty() {
                self.rec.fail(
                    Check::Consistency,
                    at,
                    format!(
                        "a consistency proof between sizes {} and {} of {}, but the bundles hold no signed checkpoint of {} of size {}",
                        p.old_size,
                        p.new_size,
                        p.author,
                        p.author,
                        missing
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                );
                continue;
            }
            let mut ok = None;
            for o in &olds {
                for n in &news {
                    if lienthong_log::verify_consistency(p.old_size, *o, p.new_size, *n, &p.hashes)
                        .is_ok()
                    {
                        ok = Some((*o, *n));
                    }
                }
            }
            match ok {
                Some((o, n)) => {
                    self.rec.pass(Check::Consistency);
                    proven.push((p.author.clone(), (p.old_size, o.0), (p.new_size, n.0)));
                }
                None => self.rec.fail(
                    Check::Consistency,
                    at,
                    format!(
                        "the consistency proof from size {} to size {} of {} does not connect the two signed roots: the newer tree does not extend the older one, or the proof was altered",
                        p.old_size, p.new_size, p.author
                    ),
                ),
            }
        }
        self.proofs = proofs;
        proven
    }

    /// Two different signed roots for one size of one feed, from any two
    /// places; and checkpoints a member holds that its own segment omits.
    fn check_forks(&mut self) {
        let mut failures: Vec<(Location, String)> = Vec::new();
        for (author, sizes) in &self.refs {
            for (size, list) in sizes {
                let signed: Vec<_> = list.iter().filter(|r| r.signed).collect();
                let Some(first) = signed.first() else {
                    continue;
                };
                if let Some(other) = signed.iter().find(|r| r.root != first.root) {
                    failures.push((
                        other.at.clone(),
                        format!(
                            "{author} signed two different checkpoints of size {size} (the other is at {}): it showed two different histories of its feed",
                            first.at
                        ),
                    ));
                }
                let mut roots: Vec<&Hash> = signed.iter().map(|r| &r.root).collect();
                roots.dedup();
                for (_, seg) in self.segments_of(author) {
                    if !seg.sound {
                        continue;
                    }
                    let theirs = if seg.covers_size(*size) {
                        match seg.root_at(*size) {
                            Some(r) => r,
                            None => {
                                failures.push((
                                    first.at.clone(),
                                    format!(
                                        "{author} signed this checkpoint of size {size}, but {author}'s own export of entries {} to {} ({} record {}) does not carry it: a segment must include every checkpoint its author holds for its range",
                                        seg.start,
                                        seg.end.saturating_sub(1),
                                        self.rec.names.get(seg.bundle).map_or("?", String::as_str),
                                        seg.record
                                    ),
                                ));
                                continue;
                            }
                        }
                    } else if *size == seg.start {
                        match seg.root_at(*size) {
                            Some(r) => r,
                            None => continue,
                        }
                    } else {
                        continue;
                    };
                    if let Some(r) = signed.iter().find(|r| r.root != theirs) {
                        failures.push((
                            r.at.clone(),
                            format!(
                                "{author} signed two different trees of size {size}: this checkpoint and the root of its own export ({} record {}) differ",
                                self.rec.names.get(seg.bundle).map_or("?", String::as_str),
                                seg.record
                            ),
                        ));
                    }
                }
            }
        }
        // Segments of one feed against each other: common entries and
        // common checkpoint sizes must agree.
        for (i, a) in self.segments.iter().enumerate() {
            for b in self.segments.iter().skip(i + 1) {
                if a.author != b.author {
                    continue;
                }
                let lo = a.start.max(b.start);
                let hi = a.end.min(b.end);
                if let Some(k) = (lo..hi).find(
                    |&k| matches!((a.entry(k), b.entry(k)), (Some(x), Some(y)) if x.id != y.id),
                ) {
                    let at = self.rec.at_bundle(b.bundle).author(&b.author).index(k);
                    failures.push((at, format!(
                        "two exports of {}'s feed disagree on entry {k} (the other is in {} record {})",
                        a.author,
                        self.rec.names.get(a.bundle).map_or("?", String::as_str),
                        a.record
                    )));
                }
                for (size, root) in &b.checkpoints {
                    if let Some(r) = a.root_at(*size)
                        && r != *root
                    {
                        let at = self.rec.at_bundle(b.bundle).author(&b.author).size(*size);
                        failures.push((at, format!(
                            "{} signed two different trees of size {size}, one in each of two exports of its feed",
                            a.author
                        )));
                        break;
                    }
                }
            }
        }
        let checked = self.refs.values().map(BTreeMap::len).sum::<usize>();
        for (at, m) in failures {
            self.rec.fail(Check::Consistency, at, m);
        }
        for _ in 0..checked {
            self.rec.pass(Check::Consistency);
        }
    }

    /// An entry an exporter received must be the entry its author exported
    /// at that index.
    fn check_received_against_segments(&mut self) {
        let mut failures = Vec::new();
        for r in &self.received {
            for (_, seg) in self.segments_of(&r.author) {
                if let Some(e) = seg.entry(r.index)
                    && e.id != r.id
                {
                    failures.push((
                        r.at.clone(),
                        format!(
                            "this received entry {} of {} differs from entry {} in {}'s own export ({} record {}): {} showed two different entries at one index",
                            r.index,
                            r.author,
                            r.index,
                            r.author,
                            self.rec.names.get(seg.bundle).map_or("?", String::as_str),
                            e.record,
                            r.author
                        ),
                    ));
                }
            }
        }
        for (at, m) in failures {
            self.rec.fail(Check::Consistency, at, m);
        }
    }

    /// Groups each member's checkpoints into sets proven consistent: a
    /// segment proves all its checkpoints consistent; a consistency proof
    /// proves its two; a checkpoint with the same size and root as one in
    /// a group joins it. Two groups merge when one's newest checkpoint is
    /// in the other (then every checkpoint of both is a prefix of the
    /// other's newest). Returns the number of groups per member.
    fn link_groups(&mut self, proven: &[(String, Head, Head)]) -> BTreeMap<String, u64> {
        let mut members: BTreeSet<String> = self.refs.keys().cloned().collect();
        members.extend(self.segments.iter().map(|s| s.author.clone()));
        let mut out = BTreeMap::new();
        for author in members {
            enum Part<'s> {
                Segment(&'s Segment),
                Heads(Vec<Head>),
            }
            let mut parts: Vec<(Part, Head)> = Vec::new();
            for (_, s) in self.segments_of(&author) {
                if let Some((size, root)) = s.checkpoints.last() {
                    parts.push((Part::Segment(s), (*size, root.0)));
                }
            }
            let mut seen = BTreeSet::new();
            for (size, list) in self.refs.get(&author).into_iter().flatten() {
                for r in list.iter().filter(|r| r.signed) {
                    if seen.insert((*size, r.root.0)) {
                        parts.push((Part::Heads(vec![(*size, r.root.0)]), (*size, r.root.0)));
                    }
                }
            }
            for (a, old, new) in proven {
                if *a == author {
                    parts.push((Part::Heads(vec![*old, *new]), *new));
                }
            }
            let mut index: HashMap<Head, Vec<usize>> = HashMap::new();
            for (i, (part, _)) in parts.iter().enumerate() {
                if let Part::Heads(heads) = part {
                    for h in heads {
                        index.entry(*h).or_default().push(i);
                    }
                }
            }
            let mut parent: Vec<usize> = (0..parts.len()).collect();
            fn find(parent: &mut [usize], mut i: usize) -> usize {
                while parent[i] != i {
                    parent[i] = parent[parent[i]];
                    i = parent[i];
                }
                i
            }
            for i in 0..parts.len() {
                let max = parts[i].1;
                let mut holders: Vec<usize> = index.get(&max).cloned().unwrap_or_default();
                for (j, (part, _)) in parts.iter().enumerate() {
                    if let Part::Segment(s) = part
                        && s.root_at(max.0).map(|r| r.0) == Some(max.1)
                    {
                        holders.push(j);
                    }
                }
                for j in holders {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                }
            }
            let mut spans: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
            for (i, (part, max)) in parts.iter().enumerate() {
                let root = find(&mut parent, i);
                let lo = match part {
                    Part::Segment(s) => s.checkpoints.first().map_or(s.start, |c| c.0),
                    Part::Heads(h) => h.iter().map(|x| x.0).min().unwrap_or(0),
                };
                let hi = max.0;
                let span = spans.entry(root).or_insert((lo, hi));
                span.0 = span.0.min(lo);
                span.1 = span.1.max(hi);
            }
            if spans.len() > 1 {
                let list: Vec<String> = spans
                    .values()
                    .take(8)
                    .map(|(lo, hi)| format!("sizes {lo}–{hi}"))
                    .collect();
                self.rec.warn(
                    Check::Consistency,
                    Location::default().author(&author),
                    format!(
                        "{author}'s checkpoints in the bundles fall into {} groups that no segment or consistency proof links ({}{}): each group is consistent within itself, but a fork between groups cannot be ruled out; add consistency proofs or the author's own segment",
                        spans.len(),
                        list.join(", "),
                        if spans.len() > 8 { ", …" } else { "" }
                    ),
                );
            }
            out.insert(author, spans.len() as u64);
        }
        out
    }

    /// The cross-check between senders' segments and receivers' receipts.
    fn cross_check(&mut self, opts: &VerifyOptions) -> Deliveries {
        let late = i64::try_from(opts.late_after.as_millis()).unwrap_or(i64::MAX);
        let skew = i64::try_from(opts.clock_skew.as_millis()).unwrap_or(i64::MAX);
        let mut d = Deliveries::default();
        let keys = self.keys;
        // Per member: (start, first created, last created) of each segment.
        let mut coverage: HashMap<&str, Vec<(u64, i64, i64)>> = HashMap::new();
        for s in &self.segments {
            if let (Some(first), Some(last)) = (s.entries.first(), s.entries.last()) {
                coverage.entry(s.author.as_str()).or_default().push((
                    s.start,
                    first.created_unix_ms,
                    last.created_unix_ms,
                ));
            }
        }
        let covered = |member: &str, t: i64| {
            coverage.get(member).is_some_and(|spans| {
                spans.iter().any(|&(start, first, last)| {
                    (start == 0 || first < t.saturating_sub(skew)) && last > t.saturating_add(late)
                })
            })
        };
        let mut failures: Vec<(Location, String)> = Vec::new();
        let mut warnings: Vec<(Location, String)> = Vec::new();
        let mut passes = 0u64;

        let mut order: Vec<usize> = (0..self.segments.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&self.segments[a], &self.segments[b]);
            (&x.author, x.start).cmp(&(&y.author, y.start))
        });
        let mut done: HashMap<&str, u64> = HashMap::new();
        for &si in &order {
            let seg = &self.segments[si];
            let Some(sender) = keys.bit(&seg.author) else {
                continue;
            };
            let from = done
                .get(seg.author.as_str())
                .copied()
                .unwrap_or(0)
                .max(seg.start);
            for index in from..seg.end {
                let Some(e) = seg.entry(index) else { break };
                if e.flags & VERIFIED == 0 || e.flags & IS_RECEIPT != 0 {
                    continue;
                }
                let recipients = e.audience & !(1u64 << sender);
                for r in (0..64u8).filter(|b| recipients & (1 << b) != 0) {
                    d.expected += 1;
                    let receiver = keys.code(r);
                    let receipt = self.receipts.get(&(sender, index)).and_then(|list| {
                        list.iter()
                            .find(|rc| rc.receiver == r && rc.facts.entry_id == e.id)
                    });
                    let at = || {
                        Location {
                            bundle: self.rec.names.get(seg.bundle).cloned(),
                            record: Some(e.record),
                            ..Location::default()
                        }
                        .author(&seg.author)
                        .index(index)
                    };
                    match receipt {
                        Some(rc) => {
                            passes += 1;
                            let delay = rc.created_unix_ms.saturating_sub(e.created_unix_ms);
                            if delay > late {
                                d.late += 1;
                                warnings.push((at(), format!(
                                    "{receiver} acknowledged this entry {} after it was created (its receipt is entry {} of {receiver}), later than the allowed {}",
                                    human_ms(delay), rc.receiver_index, human_ms(late)
                                )));
                            } else {
                                d.delivered += 1;
                                if delay < -skew {
                                    warnings.push((at(), format!(
                                        "{receiver}'s receipt (entry {} of {receiver}) was created {} before this entry: the two clocks disagree",
                                        rc.receiver_index, human_ms(-delay)
                                    )));
                                }
                            }
                        }
                        None if covered(receiver, e.created_unix_ms) => {
                            d.missing += 1;
                            failures.push((at(), format!(
                                "entry {index} of {} is addressed to {receiver}, and {receiver}'s feed in the bundles runs more than {} past it, but holds no receipt for it: within that feed {receiver} never acknowledged it (it did not reach {receiver}, or was not recorded)",
                                seg.author, human_ms(late)
                            )));
                        }
                        None => d.not_checkable += 1,
                    }
                }
            }
            let end = done.entry(seg.author.as_str()).or_default();
            *end = (*end).max(seg.end);
        }

        for ((sender, index), list) in &self.receipts {
            let author = keys.code(*sender);
            let mut receivers = BTreeSet::new();
            for rc in list {
                d.receipts += 1;
                let receiver = keys.code(rc.receiver);
                if !receivers.insert(rc.receiver) {
                    warnings.push((
                        rc.at.clone(),
                        format!("{receiver} acknowledged entry {index} of {author} more than once"),
                    ));
                }
                let cs = rc.facts.checkpoint_size;
                if *index >= cs {
                    failures.push((rc.at.clone(), format!(
                        "{receiver}'s receipt says entry {index} of {author} was proven in {author}'s checkpoint of size {cs}, which cannot contain index {index}"
                    )));
                    continue;
                }
                let held = self
                    .segments_of(author)
                    .find_map(|(_, s)| s.entry(*index).map(|e| (s, e)));
                match held {
                    None => d.receipts_unmatched += 1,
                    Some((_, e)) if e.id != rc.facts.entry_id => failures.push((rc.at.clone(), format!(
                        "{receiver} acknowledges entry {index} of {author} with id {}, but {author}'s entry {index} has id {}: a receipt for an entry that does not exist",
                        hex::encode(rc.facts.entry_id), hex::encode(e.id)
                    ))),
                    Some((_, e)) if e.audience & (1 << rc.receiver) == 0 => failures.push((rc.at.clone(), format!(
                        "{receiver} acknowledges entry {index} of {author}, which is not addressed to {receiver}"
                    ))),
                    Some((_, e)) => {
                        passes += 1;
                        if e.flags & IS_RECEIPT != 0 {
                            warnings.push((rc.at.clone(), format!(
                                "{receiver} acknowledges entry {index} of {author}, which is itself a receipt"
                            )));
                        }
                    }
                }
                for (_, s) in self.segments_of(author) {
                    if s.sound && s.covers_size(cs) && s.root_at(cs).is_none() {
                        failures.push((rc.at.clone().size(cs), format!(
                            "{receiver}'s receipt says it proved entry {index} of {author} under {author}'s checkpoint of size {cs}, but {author}'s own export of entries {} to {} does not carry a checkpoint of that size",
                            s.start, s.end.saturating_sub(1)
                        )));
                    }
                }
            }
        }
        for _ in 0..passes {
            self.rec.pass(Check::Delivery);
        }
        for (at, m) in failures {
            self.rec.fail(Check::Delivery, at, m);
        }
        for (at, m) in warnings {
            self.rec.warn(Check::Delivery, at, m);
        }
        d
    }

    fn feed_summaries(&self, groups: &BTreeMap<String, u64>) -> Vec<FeedSummary> {
        let mut members: BTreeSet<&str> = self.refs.keys().map(String::as_str).collect();
        members.extend(self.segments.iter().map(|s| s.author.as_str()));
        members.extend(self.received_count.keys().map(String::as_str));
        members
            .into_iter()
            .map(|m| FeedSummary {
                member: m.to_owned(),
                segments: self
                    .segments_of(m)
                    .map(|(_, s)| SegmentSummary {
                        bundle: self.rec.names.get(s.bundle).cloned().unwrap_or_default(),
                        start: s.start,
                        end: s.end,
                        checkpoints: s.checkpoint_records,
                    })
                    .collect(),
                received_entries: self.received_count.get(m).copied().unwrap_or(0),
                reference_checkpoints: self
                    .refs
                    .get(m)
                    .map_or(0, |s| s.values().map(|v| v.len() as u64).sum()),
                checkpoint_keys: self
                    .key_uses
                    .iter()
                    .filter(|((member, _), _)| member == m)
                    .filter_map(|((_, k), n)| {
                        let h = self.keys.held(m).get(*k)?;
                        Some(KeyUse {
                            vkey: lienthong_log::vkey_string(&self.keys.origin_of(m), &h.key),
                            first_version: h.first,
                            last_version: h.last,
                            checkpoints: *n,
                        })
                    })
                    .collect(),
                checkpoint_groups: groups.get(m).copied().unwrap_or(0),
            })
            .collect()
    }
}

/// A duration for people: "2 h 5 min", "40 s", "350 ms".
fn human_ms(ms: i64) -> String {
    let ms = ms.unsigned_abs();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{} s", ms / 1000)
    } else if ms < 3_600_000 {
        format!("{} min", ms / 60_000)
    } else {
        format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}
