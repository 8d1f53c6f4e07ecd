#!/usr/bin/env bash
# Runs the local trial of deploy/docker-compose.yml without a Docker engine, for CI: the same
# four programs with the same routes.yaml, handler.py and queue_reader.py, each as a process in
# one private network namespace whose /etc/hosts names them as the compose services (sqs,
# handler, hookfan). Then `hookfan send message.new`, as deploy/README.md tells a user, and it
# waits for the event to arrive, signature verified, at the handler and through the queue.
#
# Needs root (namespaces). Usage: deploy/compose/trial-without-docker.sh HOOKFAN_BINARY
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "$1")
WORK=$PWD/target/compose-trial
MOTO_SPEC=$(sed -n 's/.*MOTO_SPEC: &str = "\(.*\)";/\1/p' tests/it/moto.rs)

# moto and boto3: the tests' venv when they installed it, else one of our own.
VENV=target/moto-venv-${MOTO_SPEC##*==}
if [ "$(cat "$VENV/.hookfan-installed" 2>/dev/null)" != "$MOTO_SPEC" ]; then
    VENV=target/deploy-venv/moto-${MOTO_SPEC##*==}
    if [ ! -x "$VENV/bin/moto_server" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet "$MOTO_SPEC"
    fi
fi
export VENV=$PWD/$VENV BIN WORK
rm -rf "$WORK" && mkdir -p "$WORK/data"
printf '127.0.0.1 localhost sqs handler hookfan\n' > "$WORK/hosts"

unshare --mount --net --fork --kill-child bash -euo pipefail -c '
    fail() { echo "[compose-trial] FAIL: $*" >&2; tail -n 20 "$WORK"/*.log >&2; exit 1; }
    ip link set lo up
    mount --make-rprivate /
    mount --bind "$WORK/hosts" /etc/hosts
    # The compose environment, values as in deploy/docker-compose.yml.
    export STREAM_API_KEY=trial_key STREAM_API_SECRET=trial_secret_not_for_production
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy
    "$VENV/bin/moto_server" -H 0.0.0.0 -p 5000 > "$WORK/sqs.log" 2>&1 &
    for _ in $(seq 100); do
        "$VENV/bin/python" -c "import boto3; boto3.client(\"sqs\", endpoint_url=\"http://sqs:5000\").create_queue(QueueName=\"stream-events\")" 2>/dev/null && break
        sleep 0.2
    done
    PORT=3000 "$VENV/bin/python" -u deploy/compose/handler.py > "$WORK/handler.log" 2>&1 &
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/3000) 2>/dev/null && break; sleep 0.1; done
    SQS_QUEUE_URL=http://sqs:5000/123456789012/stream-events AWS_ENDPOINT_URL=http://sqs:5000 \
        "$VENV/bin/python" -u deploy/compose/queue_reader.py > "$WORK/queue-reader.log" 2>&1 &
    # hookfan with the compose routes.yaml; /data is the spool volume.
    sed "s|data_dir: /data|data_dir: $WORK/data|" deploy/compose/routes.yaml > "$WORK/routes.yaml"
    export HOOKFAN_CONFIG=$WORK/routes.yaml
    "$BIN" serve > "$WORK/hookfan.log" 2>&1 &
    hookfan=$!
    for _ in $(seq 100); do "$BIN" healthcheck >/dev/null 2>&1 && break; sleep 0.1; done
    "$BIN" healthcheck || fail "hookfan not ready"
    "$BIN" send message.new
    for _ in $(seq 150); do
        grep -q "handler: message.new .*signature=ok" "$WORK/handler.log" \
            && grep -q "queue-reader: message.new .*signature=ok" "$WORK/queue-reader.log" && break
        sleep 0.2
    done
    grep -h "message.new" "$WORK/handler.log" "$WORK/queue-reader.log" | sed "s/^/[compose-trial] /"
    grep -q "handler: message.new .*signature=ok" "$WORK/handler.log" || fail "the handler did not get the event"
    grep -q "queue-reader: message.new .*signature=ok" "$WORK/queue-reader.log" || fail "the queue did not get the event"
    kill -TERM $hookfan && wait $hookfan || fail "hookfan did not exit 0 on SIGTERM"
'
echo "[compose-trial] OK: a signed message.new reached the handler and the SQS queue, signatures verified"
