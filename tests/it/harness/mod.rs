//! Shared machinery for the end-to-end tests: the daemon process, a
//! programmable HTTP receiver, signing and posting helpers, and the Stream
//! webhook fixtures; one file per part, all of it reachable as `harness::*`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// Secret of the default app; also the one every fixture is signed with.
pub const SECRET: &str = "test_secret_do_not_use_in_production";
pub const API_KEY: &str = "test_key";
pub const OTHER_KEY: &str = "other_key";
pub const OTHER_SECRET: &str = "other_secret";

/// How long the daemon may take to print its listening line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a delivery may take to reach a receiver once it is possible.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `SIGTERM` may take (shutdown_grace is 10 s in the default config).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the `dead-letters` CLI may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

const LISTENING: &str = "ingest listening on http://";
const LISTENING_TLS: &str = "ingest listening on https://";
/// How the daemon announces that it has no webhook listener (sources only).
const SOURCES_ONLY: &str = "receiving from sources only";
/// How the daemon announces its admin listener.
const ADMIN_LISTENING: &str = "admin listening on http://";
const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

mod config;
mod daemon;
mod faults;
mod fixtures;
mod otlp;
mod receiver;
mod signing;
mod util;

pub use config::*;
pub use daemon::*;
pub use faults::*;
pub use fixtures::*;
pub use otlp::*;
pub use receiver::*;
pub use signing::*;
pub use util::*;
