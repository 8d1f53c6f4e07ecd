//! What the container image and the probes rely on: `hookfan healthcheck` (the image's
//! HEALTHCHECK, run where the app secrets are not in the environment) and `hookfan --version`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::harness::*;

/// Runs the hookfan binary with `args` and an environment holding nothing but `PATH`: no app
/// secret, no `HOOKFAN_CONFIG`, no proxy.
async fn hookfan_bare(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookfan"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    let described = format!("{cmd:?}");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("run {described}: {e}"));
    eprintln!(
        "[test] {described} -> {}\nstdout: {}stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn healthcheck(config: &Path) -> Output {
    hookfan_bare(&[
        "healthcheck",
        "--config",
        config.to_str().expect("utf-8 path"),
    ])
    .await
}

/// A daemon whose config takes the app's key and secret from its environment, as the shipped
/// routes.yaml and the Kubernetes Secret do.
async fn daemon_with_secrets_from_env() -> Daemon {
    let mut config = Config::default().file_route("to-file", "events.jsonl");
    config.apps = vec![(
        "${HOOKFAN_IT_KEY}".to_owned(),
        "${HOOKFAN_IT_SECRET}".to_owned(),
    )];
    Daemon::start(
        config
            .env("HOOKFAN_IT_KEY", API_KEY)
            .env("HOOKFAN_IT_SECRET", SECRET),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_passes_on_a_ready_daemon_without_the_app_secrets_in_its_environment() {
    let daemon = daemon_with_secrets_from_env().await;
    // The harness binds the admin listener to port 0: healthcheck finds it in data_dir.
    let out = healthcheck(&daemon.dir().join("routes.yaml")).await;
    assert!(out.status.success(), "healthcheck must exit 0: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("http://{}/readyz: ready", daemon.admin)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_fails_with_a_one_line_reason_when_not_ready_and_when_not_running() {
    let mut daemon = daemon_with_secrets_from_env().await;
    let config = daemon.dir().join("routes.yaml");
    // Tests may run as root, whom file modes do not stop: block the readiness probe's own path.
    let probe = daemon.dir().join("data").join(".hookfan-ready-probe");
    std::fs::create_dir(&probe).expect("block the readiness probe");
    let out = healthcheck(&config).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("answered 503"), "{stderr}");
    assert!(stderr.contains("is not writable"), "{stderr}");
    std::fs::remove_dir(&probe).unwrap();
    assert!(healthcheck(&config).await.status.success());

    daemon.stop_gracefully().await;
    let out = healthcheck(&config).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("is hookfan running"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_names_the_package_version_and_the_commit_it_was_built_from() {
    let out = hookfan_bare(&["--version"]).await;
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected_commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        // Built outside a git checkout (a tarball): build.rs falls back to this.
        .unwrap_or_else(|| {
            std::env::var("HOOKFAN_GIT_COMMIT").unwrap_or_else(|_| "unknown".to_owned())
        });
    assert_eq!(
        stdout.trim(),
        format!(
            "hookfan {} (commit {expected_commit})",
            env!("CARGO_PKG_VERSION")
        )
    );
}
