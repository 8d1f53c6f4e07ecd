//! End-to-end tests for the `hookfan` binary.
//!
//! Every test starts its own daemon (own temp dir, own config, own spool) and
//! its own receivers, and talks to them only over HTTP, signals and the CLI,
//! the way Stream and an operator would.
//!
//! - `harness`: the daemon process, the programmable HTTP receiver, signing
//!   and posting helpers, the Stream fixtures.
//! - `e2e_ingest`: what the ingest endpoint answers.
//! - `e2e_delivery`: what routes receive, retries, dead letters, isolation.
//! - `e2e_crash`: `kill -9` and `SIGTERM` under load.

mod e2e_crash;
mod e2e_delivery;
mod e2e_ingest;
mod harness;
