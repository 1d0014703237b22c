//! Federation rules: the agreement (who receives what) and the manifest
//! (who the members are, and how a new version takes effect). One test
//! binary for both, since the manifest carries the agreement.

mod agreement;
mod manifest;
