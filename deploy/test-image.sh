#!/usr/bin/env bash
# Builds the runtime image of deploy/Dockerfile from the release binary, inspects it, and runs
# it: as a container where podman can run one, else from the image's unpacked root filesystem
# (read-only, as the image's user, in private mount, PID and network namespaces). Either way it
# shows that hookfan starts, passes the image's HEALTHCHECK, stores a signed webhook
# (`hookfan send`) into /data, and exits 0 on SIGTERM. Prints which of the two it did.
#
# Needs root (podman, namespaces). Installs podman from Debian's packages when missing.
# Usage: deploy/test-image.sh   (from anywhere; builds target/release/hookfan if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { echo "[test-image] $*"; }
fail() { echo "[test-image] FAIL: $*" >&2; exit 1; }

command -v podman >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null
podman --version

BIN=target/release/hookfan
cargo build --release --locked   # a no-op when .ci/deploy built it already
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# What `hookfan --version` in the image must print: build.rs records the same commit.
EXPECTED_VERSION="hookfan $VERSION (commit $REVISION)"
SOURCE_URL=https://example.invalid/hookfan   # what the label must then say
IMAGE=localhost/hookfan:ci-test
WORK=$ROOT/target/image-test
# Test-only secrets, never real ones.
TEST_KEY=image_test_key
TEST_SECRET=image_test_secret_not_real

rm -rf "$WORK"
mkdir -p "$WORK"

# ---- the Dockerfile agrees with Cargo.toml, and .dockerignore passes exactly what it copies
[ "$(sed -n 's/^ARG VERSION=//p' deploy/Dockerfile)" = "$VERSION" ] \
    || fail "deploy/Dockerfile's ARG VERSION is not Cargo.toml's version $VERSION"
say "build context as .dockerignore filters it"
mkdir -p "$WORK/ctx-check"
printf 'FROM scratch\nCOPY . /ctx/\n' > "$WORK/ctx-check/Containerfile"
podman build -q -f "$WORK/ctx-check/Containerfile" -t localhost/hookfan-ctx:ci-test . >/dev/null
ctr=$(podman create localhost/hookfan-ctx:ci-test /none)
podman export "$ctr" | tar -t | sed -n 's|^ctx/||p' | sed '/^$/d' | sort > "$WORK/context.txt"
podman rm -f "$ctr" >/dev/null
podman rmi -f localhost/hookfan-ctx:ci-test >/dev/null
for needed in Cargo.toml Cargo.lock build.rs src/main.rs src/lib.rs routes.yaml deploy/install-docs.sh; do
    grep -qx "$needed" "$WORK/context.txt" || fail ".dockerignore leaves $needed out of the build context"
done
# Files compiled into the binary (the web console's assets) must reach the build stage too.
for needed in $(find assets -type f | sort); do
    grep -qx "$needed" "$WORK/context.txt" || fail ".dockerignore leaves $needed out of the build context"
done
if grep -E '^(target|\.git|fuzz|tests)(/|$)' "$WORK/context.txt" | head -3 | grep -q .; then
    fail ".dockerignore lets target/, .git, fuzz/ or tests/ into the build context"
fi
say "build context: $(wc -l < "$WORK/context.txt") entries, target/ and .git excluded"

# ---- the prebuilt layout: what the Dockerfile's build stage produces, plus what distroless/cc
# would bring (glibc and the libraries the binary links, passwd, CA certificates).
CTX=$WORK/context
R=$CTX/prebuilt/rootfs
mkdir -p "$R/usr/local/bin" "$R/etc/hookfan" "$R/etc/ssl/certs" "$CTX/prebuilt/volume/data"
objcopy --strip-debug "$BIN" "$R/usr/local/bin/hookfan"
cp routes.yaml "$R/etc/hookfan/routes.yaml"
deploy/install-docs.sh "$BIN" "$R"
ldd "$BIN" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$R/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$R/etc/group"
printf 'hosts: files dns\n' > "$R/etc/nsswitch.conf"
[ -f /etc/ssl/certs/ca-certificates.crt ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates >/dev/null
cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/"
say "linked libraries: $(ldd "$BIN" | grep -o '/[^ ]*' | sort -u | tr '\n' ' ')"

say "podman build --target runtime (BINARY_SOURCE=prebuilt, RUNTIME_BASE=scratch)"
t0=$SECONDS
podman build --format docker -f deploy/Dockerfile --target runtime \
    --build-arg BINARY_SOURCE=prebuilt --build-arg RUNTIME_BASE=scratch \
    --build-arg REVISION="$REVISION" --build-arg SOURCE_URL="$SOURCE_URL" \
    -t "$IMAGE" "$CTX" > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; fail "podman build"; }
say "built $IMAGE in $((SECONDS - t0)) s, $(podman image inspect "$IMAGE" --format '{{.Size}}') bytes"

# ---- inspect: what the image promises
podman image inspect "$IMAGE" > "$WORK/inspect.json"
python3 - "$WORK/inspect.json" "$VERSION" "$REVISION" "$SOURCE_URL" <<'PY'
import json, sys
image, version, revision, source = json.load(open(sys.argv[1]))[0], *sys.argv[2:]
config = image["Config"]
env = dict(e.split("=", 1) for e in config.get("Env", []))
labels = config.get("Labels") or {}
health = image.get("Healthcheck") or config.get("Healthcheck") or {}
expected = {
    "user": ("65532:65532", config.get("User")),
    "entrypoint": (["/usr/local/bin/hookfan"], config.get("Entrypoint")),
    "cmd": (["serve"], config.get("Cmd")),
    "volumes": (["/data"], sorted(config.get("Volumes") or {})),
    "exposed ports": (["8080/tcp", "9090/tcp"], sorted(config.get("ExposedPorts") or {})),
    "HEALTHCHECK": (["CMD", "/usr/local/bin/hookfan", "healthcheck"], health.get("Test")),
    "HOOKFAN_CONFIG": ("/etc/hookfan/routes.yaml", env.get("HOOKFAN_CONFIG")),
    "HOOKFAN_DATA_DIR": ("/data", env.get("HOOKFAN_DATA_DIR")),
    "StopSignal": ("SIGTERM", config.get("StopSignal")),
    "label version": (version, labels.get("org.opencontainers.image.version")),
    "label revision": (revision, labels.get("org.opencontainers.image.revision")),
    "label source": (source, labels.get("org.opencontainers.image.source")),
    "label licenses": ("Apache-2.0", labels.get("org.opencontainers.image.licenses")),
}
bad = [f"{k}: expected {want!r}, image has {got!r}" for k, (want, got) in expected.items() if want != got]
for line in bad:
    print(f"[test-image] MISMATCH {line}", file=sys.stderr)
if bad:
    sys.exit(1)
print(f"[test-image] inspect OK: {', '.join(expected)}")
PY
# Shell completions and man pages, generated from the CLI definition by the binary itself.
ctr=$(podman create "$IMAGE")
podman export "$ctr" | tar -t | sed 's|^\./||' | sort > "$WORK/image-files.txt"
podman rm -f "$ctr" >/dev/null
for f in usr/local/share/bash-completion/completions/hookfan usr/local/share/zsh/site-functions/_hookfan \
         usr/local/share/fish/vendor_completions.d/hookfan.fish usr/local/share/man/man1/hookfan.1; do
    grep -qx "$f" "$WORK/image-files.txt" || fail "the image lacks /$f"
done
say "completions (bash, zsh, fish) and man pages are in the image"
# The licence label must be Cargo.toml's.
grep -q '^license = "Apache-2.0"' Cargo.toml || fail "Cargo.toml's licence is no longer Apache-2.0: update the label"

# The image's environment and healthcheck command, for running it by hand below.
mapfile -t IMAGE_ENV < <(python3 -c 'import json,sys; [print(e) for e in json.load(open(sys.argv[1]))[0]["Config"]["Env"]]' "$WORK/inspect.json")
HEALTHCHECK_CMD=$(python3 -c 'import json,sys; i=json.load(open(sys.argv[1]))[0]; print(" ".join((i.get("Healthcheck") or i["Config"]["Healthcheck"])["Test"][1:]))' "$WORK/inspect.json")

# ---- run it: as a container when podman can, else from the unpacked root filesystem
if podman run --rm --read-only --network none "$IMAGE" --version > "$WORK/run-probe.log" 2>&1; then
    say "MODE: ran the image (podman run --read-only)"
    podman rm -f hookfan-ci-test >/dev/null 2>&1 || true
    podman volume rm -f hookfan-ci-test >/dev/null 2>&1 || true
    podman run -d --name hookfan-ci-test --read-only --cap-drop ALL --security-opt no-new-privileges \
        -v hookfan-ci-test:/data -e STREAM_API_KEY=$TEST_KEY -e STREAM_API_SECRET=$TEST_SECRET \
        "$IMAGE" > /dev/null
    ok=""
    for _ in $(seq 100); do
        if podman exec hookfan-ci-test $HEALTHCHECK_CMD >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.1
    done
    [ -n "$ok" ] || { podman logs hookfan-ci-test; fail "healthcheck never passed"; }
    podman exec hookfan-ci-test $HEALTHCHECK_CMD
    version=$(podman exec hookfan-ci-test /usr/local/bin/hookfan --version)
    [ "$version" = "$EXPECTED_VERSION" ] || fail "the image says \"$version\", expected \"$EXPECTED_VERSION\""
    say "$version"
    pid=$(podman inspect hookfan-ci-test --format '{{.State.Pid}}')
    uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
    [ "$uid" = 65532 ] || fail "hookfan runs as uid $uid, not 65532"
    say "hookfan runs as uid $uid"
    podman exec -e STREAM_API_KEY=$TEST_KEY -e STREAM_API_SECRET=$TEST_SECRET hookfan-ci-test \
        /usr/local/bin/hookfan send message.new || fail "hookfan send"
    mnt=$(podman volume inspect hookfan-ci-test --format '{{.Mountpoint}}')
    for _ in $(seq 50); do grep -q '"message.new"' "$mnt/events.jsonl" 2>/dev/null && break; sleep 0.1; done
    grep -q '"message.new"' "$mnt/events.jsonl" || fail "the event did not reach /data/events.jsonl"
    compgen -G "$mnt/spool/*.seg" >/dev/null || fail "no spool segments in /data/spool"
    podman stop -t 20 hookfan-ci-test >/dev/null
    code=$(podman inspect hookfan-ci-test --format '{{.State.ExitCode}}')
    podman logs hookfan-ci-test > "$WORK/hookfan.log" 2>&1
    podman rm -f hookfan-ci-test >/dev/null
    podman volume rm -f hookfan-ci-test >/dev/null
    [ "$code" = 0 ] || { cat "$WORK/hookfan.log"; fail "exit code $code after SIGTERM"; }
    say "exit code 0 after SIGTERM"
else
    say "podman cannot start containers here: $(tail -1 "$WORK/run-probe.log")"
    say "MODE: ran the unpacked rootfs (read-only root, uid 65532, private mount/PID/network namespaces)"
    RFS=$WORK/rootfs
    DATA=$WORK/volume   # the volume: a fresh copy of the image's /data, as a runtime makes one
    mkdir -p "$RFS"
    ctr=$(podman create "$IMAGE")
    podman export "$ctr" | tar -x -C "$RFS" --numeric-owner
    podman rm -f "$ctr" >/dev/null 2>&1
    [ "$(stat -c %u:%g "$RFS/data")" = 65532:65532 ] || fail "/data in the image is owned by $(stat -c %u:%g "$RFS/data"), not 65532:65532"
    cp -a "$RFS/data" "$DATA"
    # Mount points a container runtime would provide.
    mkdir -p "$RFS/proc" "$RFS/dev" && touch "$RFS/dev/null"
    export RFS DATA HEALTHCHECK_CMD TEST_KEY TEST_SECRET WORK EXPECTED_VERSION
    printf '%s\n' "${IMAGE_ENV[@]}" > "$WORK/image.env"
    # Inside: a private mount, PID and network namespace (so ports 8080/9090 are its own).
    unshare --mount --pid --net --fork --mount-proc bash -euo pipefail -c '
        say() { echo "[test-image] $*"; }
        fail() { echo "[test-image] FAIL: $*" >&2; exit 1; }
        ip link set lo up
        mount --make-rprivate /
        mount --bind "$RFS" "$RFS"
        mount --bind "$DATA" "$RFS/data"
        mount -t proc proc "$RFS/proc"
        mount --bind /dev/null "$RFS/dev/null"
        mount -o remount,bind,ro "$RFS"
        touch "$RFS/probe" 2>/dev/null && fail "the root filesystem is writable"
        say "root filesystem read-only, /data writable"
        # The image as a runtime would start it: its Env, its user, its entrypoint and cmd.
        mapfile -t image_env < "$WORK/image.env"
        as_image_user() { exec env -i "${image_env[@]}" "$@" chroot --userspec=65532:65532 "$RFS" "${cmd[@]}"; }
        secrets=(STREAM_API_KEY=$TEST_KEY STREAM_API_SECRET=$TEST_SECRET)
        cmd=(/usr/local/bin/hookfan serve)
        ( as_image_user "${secrets[@]}" ) > "$WORK/hookfan.log" 2>&1 &
        pid=$!
        read -ra cmd <<< "$HEALTHCHECK_CMD"
        ok=""
        for _ in $(seq 100); do
            if ( as_image_user ) >/dev/null 2>&1; then ok=1; break; fi
            kill -0 $pid 2>/dev/null || { cat "$WORK/hookfan.log"; fail "hookfan exited at startup"; }
            sleep 0.1
        done
        [ -n "$ok" ] || { cat "$WORK/hookfan.log"; fail "healthcheck never passed"; }
        # Without the app secrets, as the image HEALTHCHECK runs it.
        ( as_image_user )
        uid=$(awk "/^Uid:/ {print \$2}" /proc/$pid/status)
        [ "$uid" = 65532 ] || fail "hookfan runs as uid $uid, not 65532"
        say "hookfan runs as uid $uid"
        cmd=(/usr/local/bin/hookfan --version)
        version=$( (as_image_user) )
        [ "$version" = "$EXPECTED_VERSION" ] || fail "the image says \"$version\", expected \"$EXPECTED_VERSION\""
        say "$version"
        cmd=(/usr/local/bin/hookfan send message.new)
        ( as_image_user "${secrets[@]}" )
        for _ in $(seq 50); do grep -q "\"message.new\"" "$DATA/events.jsonl" 2>/dev/null && break; sleep 0.1; done
        grep -q "\"message.new\"" "$DATA/events.jsonl" || fail "the event did not reach /data/events.jsonl"
        compgen -G "$DATA/spool/*.seg" >/dev/null || fail "no spool segments in /data/spool"
        say "/data holds: $(ls "$DATA" | tr "\n" " ")"
        kill -TERM $pid
        code=0; wait $pid || code=$?
        [ $code = 0 ] || { cat "$WORK/hookfan.log"; fail "exit code $code after SIGTERM"; }
        say "exit code 0 after SIGTERM"
    '
fi
grep -q "SIGTERM received" "$WORK/hookfan.log" || { cat "$WORK/hookfan.log"; fail "no SIGTERM line in the log"; }
say "OK: started, healthcheck passed, a signed webhook stored into /data, clean exit on SIGTERM"
podman rmi -f "$IMAGE" >/dev/null
# The build's untagged stage images (prebuilt, binary), so repeated runs do not pile up.
podman image prune -f >/dev/null
