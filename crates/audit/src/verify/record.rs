//! Accumulates counts, failures and warnings, listing at most a fixed
//! number of each so a badly broken bundle of a million records still
//! gives a report of readable size (the counts stay exact).

use std::collections::BTreeMap;

use crate::report::{Check, CheckCount, Failure, Location, Warning};

#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub names: Vec<String>,
    counts: BTreeMap<Check, (u64, u64)>,
    pub failures: Vec<Failure>,
    pub failures_not_listed: u64,
    pub warnings: Vec<Warning>,
    pub warnings_not_listed: u64,
    limit: usize,
}

impl Recorder {
    pub fn new(names: Vec<String>, limit: usize) -> Self {
        Self {
            names,
            limit,
            ..Self::default()
        }
    }

    pub fn pass(&mut self, check: Check) {
        self.counts.entry(check).or_default().0 += 1;
    }

    pub fn fail(&mut self, check: Check, at: Location, message: impl Into<String>) {
        self.counts.entry(check).or_default().1 += 1;
        if self.failures.len() < self.limit {
            self.failures.push(Failure {
                check,
                at,
                message: message.into(),
            });
        } else {
            self.failures_not_listed += 1;
        }
    }

    /// Counts a failure without listing it (one of a run already listed).
    pub fn fail_quietly(&mut self, check: Check) {
        self.counts.entry(check).or_default().1 += 1;
    }

    /// Passes or fails `check` depending on `result`.
    pub fn outcome(
        &mut self,
        check: Check,
        at: impl FnOnce() -> Location,
        result: Result<(), String>,
    ) {
        match result {
            Ok(()) => self.pass(check),
            Err(why) => self.fail(check, at(), why),
        }
    }

    pub fn warn(&mut self, check: Check, at: Location, message: impl Into<String>) {
        if self.warnings.len() < self.limit {
            self.warnings.push(Warning {
                check,
                at,
                message: message.into(),
            });
        } else {
            self.warnings_not_listed += 1;
        }
    }

    pub fn any_failed(&self) -> bool {
        self.counts.values().any(|(_, f)| *f > 0)
    }

    pub fn counts(&self) -> Vec<CheckCount> {
        Check::ALL
            .iter()
            .map(|&check| {
                let (passed, failed) = self.counts.get(&check).copied().unwrap_or_default();
                CheckCount {
                    check,
                    passed,
                    failed,
                }
            })
            .collect()
    }

    /// Location of a record.
    pub fn at(&self, bundle: usize, record: u64, offset: u64) -> Location {
        Location {
            bundle: self.names.get(bundle).cloned(),
            record: Some(record),
            offset: Some(offset),
            ..Location::default()
        }
    }

    /// Location of a bundle as a whole.
    pub fn at_bundle(&self, bundle: usize) -> Location {
        Location {
            bundle: self.names.get(bundle).cloned(),
            ..Location::default()
        }
    }
}

impl Location {
    pub(crate) fn author(mut self, author: &str) -> Self {
        self.author = Some(author.to_owned());
        self
    }

    pub(crate) fn index(mut self, index: u64) -> Self {
        self.index = Some(index);
        self
    }

    pub(crate) fn size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }
}
