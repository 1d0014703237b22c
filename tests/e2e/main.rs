//! End-to-end tests: each starts real `lienthong` processes on loopback and
//! talks to them over real mTLS gRPC (one test binary, as in ripgrep).

mod api;
mod audit;
mod backup;
mod bundle;
mod cases;
mod chaos;
mod deploy;
mod diskfull;
mod durability;
mod federation;
mod hostile;
mod independent;
mod limits;
mod ops;
mod partition;
mod python;
mod restore;
mod security;
mod tamper;
mod upgrade;
mod witness;
