//! Coordination beyond alerts: cases handled by several provinces,
//! assistance requests, coordinated inspections, meetings, retractions and
//! the statistics over them.
//!
//! Everything here is pure: validation of what local systems submit
//! ([`validate`]) and the folds that turn signed entries into state
//! ([`case`], [`assistance`], [`inspection`], [`report`]). Every node runs
//! the same folds over the entries it holds, so nodes holding the same
//! entries show the same state.

pub mod assistance;
pub mod case;
pub mod inspection;
pub mod report;
pub mod validate;
