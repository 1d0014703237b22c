//! Sans-io core of Liên Thông: what an entry is, how it is signed and
//! verified, and what a valid alert looks like.
//!
//! This crate never touches a socket, a disk or the clock: time is always a
//! parameter. Everything here is a plain function over data, so it is
//! tested exhaustively (table-driven and property tests).
//!
//! - [`entry`]: envelope format, signing under the domain tag, entry ids
//!   (RFC 6962 leaf hashes) and [`entry::VerifiedEntry`], the type that proves
//!   a signature was checked.
//! - [`delivery`]: what a receiver checks on every entry a peer delivers
//!   ([`delivery::AcceptedDelivery`] proves it passed).
//! - [`alert`]: validation and normalisation of submitted alerts, with errors
//!   that name the field and the fix.
//! - [`terms`]: the search terms an entry is indexed under.
//! - [`text`]: Vietnamese folding so "hang gia" finds "Hàng giả".
//! - [`keys`]: member signing keys as PKCS#8 PEM.
//! - [`redaction`]: withheld fields as signed commitments, with openings
//!   for the recipients allowed to see them.
//! - [`provinces`]: the 34 province codes.
//! - [`agreement`]: the sharing rules as data and [`agreement::decide`], the
//!   pure function that gives an alert its audience, redactions and handling.
//! - [`manifest`]: federation membership plus the agreement, versioned, and
//!   [`manifest::accept_next`], the quorum rule for a new version.

pub mod agreement;
pub mod alert;
pub mod coordination;
pub mod countries;
pub mod delivery;
pub mod entry;
pub mod keys;
pub mod manifest;
pub mod provinces;
pub mod redaction;
pub mod signature;
pub mod terms;
pub mod text;
pub mod witness;

pub use lienthong_proto::v1 as proto;
