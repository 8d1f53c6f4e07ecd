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
//! - `moto`: a local AWS (moto's server) for the `sqs` and `sns` routes.
//! - `e2e_aws`: what SQS queues and SNS topics receive, outages, `kill -9`.
//! - `e2e_admin`: health, readiness, metrics, dead-letter replay and drop, `hookfan status`.
//! - `e2e_consumers`: the example consumers (Python, Node, Lambda) on what hookfan sends.
//! - `e2e_pacing`: `rate_limit` against a real handler: the drain's rate and burst, a reload
//!   to another rate, `kill -9` mid-drain.
//! - `e2e_reload`: hot reload by file edit and SIGHUP.
//! - `e2e_routing`: routing by content (`match:`, `not:`) to HTTP handlers and SQS, and
//!   `POST /api/explain`.
//! - `e2e_security`: allowed_ips, max_event_age, TLS, slow and abusive clients, secrets.
//! - `e2e_sources`: Stream's native SQS delivery as a source (moto): every native form,
//!   undecodable messages left queued, `kill -9` mid-consumption, sources-only configs.
//! - `e2e_replicas`: two replicas sharing dedup on Redis (`redis`: Debian's redis-server,
//!   started per test).
//! - `e2e_redis_topologies`: shared dedup over `rediss://` with a private CA and mutual TLS,
//!   on a Redis Cluster, and through Sentinel across a failover.
//! - `e2e_faults`: the fault suite: crash loop, destination outages, full disk,
//!   corrupted spool file, overload (figures in docs/reliability.md).
//! - `e2e_hooks`: synchronous hooks proxied (passthrough), their bodies refused on push
//!   paths, pending-message callbacks routed by path, API key rotation.
//! - `e2e_malformed`: malformed requests against the daemon (a sample; the whole table runs in
//!   process, `src/ingest/tests.rs`): it survives them, and delivers only what it accepted.
//! - `e2e_console`: the web console on the admin port: its assets, `GET /api/config`, and the
//!   whole console in headless Chromium (`browser`: WebDriver over HTTP to Debian's
//!   chromedriver), with a screenshot of each page in target/console-screenshots/.
//! - `e2e_deploy`: what the container image relies on: `healthcheck`, `--version`.
//! - `e2e_tracing`: OpenTelemetry traces at a real OTLP/HTTP collector on loopback.
//! - `e2e_upgrade`: a data_dir of an earlier hookfan (`spool.redb`) imported at start.

mod browser;
mod e2e_admin;
mod e2e_aws;
mod e2e_console;
mod e2e_consumers;
mod e2e_crash;
mod e2e_delivery;
mod e2e_deploy;
mod e2e_drain;
mod e2e_faults;
mod e2e_hooks;
mod e2e_ingest;
mod e2e_malformed;
mod e2e_pacing;
mod e2e_redis_topologies;
mod e2e_reload;
mod e2e_replicas;
mod e2e_routing;
mod e2e_security;
mod e2e_sources;
mod e2e_tracing;
mod e2e_upgrade;
mod harness;
mod moto;
mod redis;
