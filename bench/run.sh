#!/usr/bin/env bash
# hookfan benchmark suite: builds in release mode, runs every scenario on 127.0.0.1 and prints
# one table (also written to <work dir>/results.md). See bench/README.md.
#
#   bench/run.sh                 # the full suite (about 6-8 minutes on 2 cores, after the build)
#   bench/run.sh --quick         # smoke test: tiny runs, about a minute; numbers not meaningful
#   bench/run.sh --scenarios ingest,drain-http   # a subset
#   BENCH_BACKLOG=200000 bench/run.sh            # scale the 1M backlog scenario down
#   BENCH_CPUS=0,1 bench/run.sh  # pin everything to two cores on a bigger machine
#   BENCH_CONNECTIONS=256 bench/run.sh --scenarios probe,ingest   # more requests in flight
#   BENCH_OLD_REV=<git rev> bench/run.sh   # the previous hookfan measured beside this one in
#                                          # `ingest` (default 88f0736, the redb spool; none: skip)
#
# Needs only a Rust toolchain. `perf` (Debian: linux-perf) is used, when it works, to count
# fsyncs; without it those rows say n/a. Set BENCH_NO_INSTALL=1 to never apt-get anything.
set -euo pipefail
cd "$(dirname "$0")/.."

examples=(bench_suite bench_load bench_baseline bench_receiver bench_sqs_stub bench_floor)
build=(cargo build --release --bin hookfan)
for e in "${examples[@]}"; do build+=(--example "$e"); done
echo "== ${build[*]}" >&2
"${build[@]}"

target_dir=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)

# The previous hookfan, measured beside this one in the ingest scenario: the revision
# BENCH_OLD_REV (default: 88f0736, the last commit with the redb spool; "none" skips it), built
# once in its own git worktree and target dir under target/bench-old/<commit>/ and reused after.
# BENCH_OLD_HOOKFAN=<path to a hookfan binary> uses that one instead, built by you.
old_rev="${BENCH_OLD_REV:-88f0736}"
if [[ -n "${BENCH_OLD_HOOKFAN:-}" ]]; then
  echo "== previous hookfan: $BENCH_OLD_HOOKFAN (BENCH_OLD_HOOKFAN)" >&2
  export BENCH_OLD_LABEL="${BENCH_OLD_LABEL:-$BENCH_OLD_HOOKFAN}"
elif [[ "$old_rev" != none ]]; then
  if ! old_commit=$(git rev-parse --verify --quiet "$old_rev^{commit}"); then
    echo "== BENCH_OLD_REV=$old_rev is not a commit of this repository (a shallow clone? git fetch --unshallow); BENCH_OLD_REV=none skips the previous hookfan" >&2
    exit 1
  fi
  old_short=$(git rev-parse --short=12 "$old_commit")
  old_dir="$target_dir/bench-old/$old_short"
  old_bin="$old_dir/target/release/hookfan"
  if [[ -x "$old_bin" && -f "$old_dir/built" ]]; then
    echo "== previous hookfan $old_rev: reusing $old_bin" >&2
  else
    mkdir -p "$old_dir"
    if [[ ! -e "$old_dir/src/.git" ]]; then
      rm -rf "$old_dir/src"
      # --force: also when the path is still registered from a deleted target/.
      git worktree add --force --detach "$old_dir/src" "$old_commit" >&2
    fi
    echo "== previous hookfan $old_rev: building $old_commit in $old_dir/src (log: $old_dir/build.log; the first time takes several minutes)" >&2
    if ! (cd "$old_dir/src" && CARGO_TARGET_DIR="$old_dir/target" cargo build --release --locked --bin hookfan) >"$old_dir/build.log" 2>&1; then
      tail -n 20 "$old_dir/build.log" >&2
      echo "== the previous hookfan ($old_rev) did not build; see $old_dir/build.log (BENCH_OLD_REV=none skips it)" >&2
      exit 1
    fi
    touch "$old_dir/built"
  fi
  export BENCH_OLD_HOOKFAN="$old_bin"
  label=$(git rev-parse --short "$old_commit")
  [[ "$label" == "$old_rev"* ]] || label="$old_rev = $label"
  export BENCH_OLD_LABEL="$label"
fi

if ! perf stat -e syscalls:sys_enter_fdatasync -- true >/dev/null 2>&1; then
  if [[ -z "${BENCH_NO_INSTALL:-}" && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "== perf cannot count syscalls; trying apt-get install linux-perf (BENCH_NO_INSTALL=1 skips)" >&2
    (apt-get install -y linux-perf >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y linux-perf >/dev/null 2>&1; }) || true
  fi
fi

suite="$target_dir/release/examples/bench_suite"

# The suite kills what it starts when it ends; if it is itself killed, end its children here
# (by the pids it recorded, never by name).
work="${BENCH_DIR:-$target_dir/bench/run-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$work"
export BENCH_DIR="$work"
# Ours: still running, and started from this target dir (guards against a recycled pid).
ours() { [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$target_dir"; }
cleanup() {
  [[ -f "$work/pids" ]] || return 0
  local pid left
  while read -r pid; do
    # CONT first: the suite freezes hookfan (SIGSTOP) while it measures the baseline.
    if ours "$pid"; then kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; fi
  done <"$work/pids"
  for _ in $(seq 50); do
    left=0
    while read -r pid; do if ours "$pid"; then left=1; fi; done <"$work/pids"
    [[ $left == 0 ]] && return 0
    sleep 0.1
  done
  while read -r pid; do
    if ours "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done <"$work/pids"
}
trap cleanup EXIT INT TERM

cmd=("$suite" "$@")
if [[ -n "${BENCH_CPUS:-}" ]]; then cmd=(taskset -c "$BENCH_CPUS" "${cmd[@]}"); fi
echo "== ${cmd[*]}" >&2
"${cmd[@]}"
