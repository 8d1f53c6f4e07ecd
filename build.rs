//! Records the git commit hookfan is built from, for `hookfan --version`.
//!
//! `git rev-parse --short HEAD` when the sources are a git checkout; otherwise (a tarball, a
//! Docker build without `.git`) the `HOOKFAN_GIT_COMMIT` environment variable, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HOOKFAN_GIT_COMMIT");
    let commit = git_head()
        .or_else(|| {
            std::env::var("HOOKFAN_GIT_COMMIT")
                .ok()
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=HOOKFAN_GIT_COMMIT={commit}");
}

/// The short hash of HEAD, and the files whose change moves it (so a new commit rebuilds).
fn git_head() -> Option<String> {
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        // A watched file that does not exist would rerun this script on every build.
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    Some(commit)
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}
