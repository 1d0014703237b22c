//! The peer side of a Liên Thông node.
//!
//! Peers are other provinces' nodes. They authenticate each other with
//! mutual TLS in which each side's certificate is accepted only if the
//! SHA-256 of its SubjectPublicKeyInfo is pinned for that member in the
//! signed manifest: no certificate authority is involved, and a peer's
//! identity after the handshake is the member code its pin belongs to.
//!
//! This crate must never accept a connection, an entry or a checkpoint that
//! it has not verified against the manifest; the checks live in the
//! verifiers here, not in the callers.
//!
//! - [`tls`]: member TLS identities (self-signed certificates with their
//!   pins) and the rustls verifiers that enforce the pins.
//! - [`reload`]: an identity re-read from its files when they change.
//! - [`channel`]: dialling a member, pinned.

pub mod channel;
pub mod reload;
pub mod tls;
