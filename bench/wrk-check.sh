#!/usr/bin/env bash
# An independent check of the suite's ingest ratios with another load generator: wrk (one
# thread, Lua), against bare axum, the durable floor and hookfan (3 routes, destination held),
# each in turn in alternating rounds, the others stopped (SIGSTOP) meanwhile. Prints each
# round's requests/s and p99, then the mean ratios to bare axum.
#
#   bench/wrk-check.sh                     # 64 connections, 3 rounds of 8 s (after bench/run.sh built the binaries)
#   C=256 R=2 D=5 bench/wrk-check.sh       # other settings
#
# Needs wrk (Debian: apt-get install wrk) and openssl, and the release binaries bench/run.sh
# builds (target/release/hookfan and target/release/examples/bench_*).
set -euo pipefail
cd "$(dirname "$0")/.."
C=${C:-64}; D=${D:-8}; R=${R:-3}
command -v wrk >/dev/null || { echo "wrk is missing (Debian: apt-get install wrk)" >&2; exit 1; }
rel=target/release
for b in "$rel/hookfan" "$rel/examples/bench_baseline" "$rel/examples/bench_floor" "$rel/examples/bench_receiver"; do
  [[ -x $b ]] || { echo "$b is missing: run bench/run.sh (it builds everything) first" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/hookfan-wrk.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# The suite's own app key and secret (examples/bench_common/mod.rs): benchmark values, no secret.
export API_KEY=bench_api_key
secret=bench_api_secret_not_for_production
export BODY_FILE=bench/wrk-body.json
SIG=$(openssl dgst -sha256 -hmac "$secret" -r "$BODY_FILE" | cut -d' ' -f1)
export SIG

listening() { # log file [what] -> http://ADDR once it says "[what ]listening on http://ADDR"
  for _ in $(seq 300); do
    addr=$(grep -o "${2:-}listening on http://[0-9.:]*" "$1" | head -1 | sed 's/.*listening on //') && [[ -n $addr ]] && { echo "$addr"; return; }
    sleep 0.1
  done
  echo "no 'listening on' in $1" >&2; exit 1
}

"$rel/examples/bench_receiver" --listen 127.0.0.1:0 --hold / >"$work/receiver.log" 2>&1 & pids+=($!)
receiver=$(listening "$work/receiver.log")
"$rel/examples/bench_baseline" --listen 127.0.0.1:0 >"$work/base.log" 2>&1 & base_pid=$!; pids+=($base_pid)
"$rel/examples/bench_floor" --listen 127.0.0.1:0 --dir "$work/floor" >"$work/floor.log" 2>&1 & floor_pid=$!; pids+=($floor_pid)
cat >"$work/hookfan.yaml" <<YAML
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
data_dir: $work/hookfan
apps:
  - api_key: $API_KEY
    api_secret: $secret
routes:
  - name: all-events
    event_types: []
    http: { url: $receiver/r1 }
  - name: messages
    event_types: [message.new, message.updated]
    http: { url: $receiver/r2 }
  - name: chat-globs
    event_types: ["message.*", "reaction.*"]
    http: { url: $receiver/r3 }
YAML
"$rel/hookfan" --config "$work/hookfan.yaml" >"$work/hookfan.log" 2>&1 & hookfan_pid=$!; pids+=($hookfan_pid)
declare -A url=([base]=$(listening "$work/base.log") [floor]=$(listening "$work/floor.log") [hookfan]=$(listening "$work/hookfan.log" "ingest "))
declare -A pid=([base]=$base_pid [floor]=$floor_pid [hookfan]=$hookfan_pid)
declare -A sum=([base]=0 [floor]=0 [hookfan]=0)

echo "wrk -t1 -c$C -d${D}s, $R rounds; body $(wc -c <"$BODY_FILE") bytes; bare axum ${url[base]}, floor ${url[floor]}, hookfan ${url[hookfan]}"
for r in $(seq "$R"); do
  for side in base floor hookfan; do
    for o in base floor hookfan; do
      if [[ $o == "$side" ]]; then kill -CONT "${pid[$o]}"; else kill -STOP "${pid[$o]}"; fi
    done
    sleep 0.5
    out=$(wrk -t1 -c"$C" -d"${D}s" --latency -s bench/wrk-sign.lua "${url[$side]}/")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    [[ -z $non2xx ]] || { echo "$side answered $non2xx non-2xx responses:" >&2; echo "$out" >&2; exit 1; }
    printf 'round %d  %-8s %10.0f requests/s  p99 %s\n' "$r" "$side" "$rps" "$p99"
    sum[$side]=$(awk -v a="${sum[$side]}" -v b="$rps" 'BEGIN {print a + b}')
  done
done
awk -v b="${sum[base]}" -v f="${sum[floor]}" -v h="${sum[hookfan]}" 'BEGIN {
  printf "ratio to bare axum: floor %.2f, hookfan %.2f; hookfan / floor %.2f\n", f / b, h / b, h / f }'
