//! # hookfan
//!
//! A durable fan-out router for Stream (getstream.io) webhooks. It verifies each webhook,
//! stores it on disk for every route that wants it, answers 200 only then, and delivers it to
//! each route's destination with retries, so no handler outage loses an event.
//!
//! # Layout
//! The modules follow the pipeline:
//!
//! - [`config`]: routes.yaml, parsed then validated into a [`config::Config`].
//! - [`ingest`]: the webhook listener; [`ingest::verify`] is its pure core (gzip, signature,
//!   JSON).
//! - [`sources`]: queues Stream delivers to natively (SQS), consumed beside ingest.
//! - [`route`]: which routes take an event type and path (pure).
//! - [`dedup`]: webhook ids shared between replicas on Redis (the claim protocol).
//! - [`spool`]: the durable store, with group commit.
//! - [`deliver`]: one worker per route, retries and backoff, dead letters; its
//!   [`deliver::supervisor`] starts and stops the workers as the config changes.
//! - [`sinks`]: destinations (`http`, `file`, `sqs`, `sns`).
//! - [`admin`]: the admin listener (health, readiness, Prometheus metrics).
//! - [`live`]: the running config, as one snapshot per request.
//! - [`reload`]: hot reload (the file watched, SIGHUP), applied to the workers and sources.
//! - [`server`]: wires the above together and shuts them down in order.
//! - [`drain`]: retiring a replica: ingest and sources stop, deliveries go on.
//! - [`telemetry`]: logging setup and the Prometheus recorder.
//! - [`stream`]: Stream's wire format: header names, signing, hook kinds, event types.
//! - [`aws`]: the AWS SDK configuration shared by the SQS/SNS destinations and the SQS source.
//! - [`template`]: `{field}` templates over event JSON (SQS/SNS message group ids).

// The library is the daemon's own code, public where a test, example, fuzz target or the
// binary needs it and crate-private otherwise; its documentation covers both
// (`cargo doc --document-private-items`), so links into private modules are meant.
#![allow(rustdoc::private_intra_doc_links)]

pub mod admin;
pub(crate) mod aws;
pub(crate) mod clock;
pub mod config;
pub(crate) mod dedup;
pub mod deliver;
pub(crate) mod drain;
pub mod ingest;
pub(crate) mod live;
pub(crate) mod priority;
pub mod reload;
pub mod route;
pub mod server;
pub(crate) mod sinks;
pub(crate) mod sources;
pub mod spool;
pub mod stream;
pub mod telemetry;
pub mod template;
