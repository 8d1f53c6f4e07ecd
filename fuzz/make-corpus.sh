#!/usr/bin/env bash
# Regenerates the seed corpus under fuzz/corpus/<target>/ from the repository's own test
# data: Stream's signed test vectors, the shipped routes.yaml, the config texts of
# tests/config.rs, and a few templates. Seeds are small; libFuzzer grows its own corpus
# elsewhere (see .ci/fuzz). Run from anywhere; needs bash, awk and gzip only.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
fixtures="$repo/tests/fixtures/stream-webhooks"
corpus="$here/corpus"

rm -rf "$corpus/ingest_verify/seed-"* "$corpus/config_parse/seed-"* "$corpus/template/seed-"* \
    "$corpus/spool_frames/seed-"*
mkdir -p "$corpus/ingest_verify" "$corpus/config_parse" "$corpus/template" "$corpus/spool_frames"

# A richer body than the vectors' two fields: the shape of a chat message.new.
rich_body='{"type":"message.new","cid":"messaging:general","channel_id":"general","channel_type":"messaging","message":{"id":"m1","text":"hi","user":{"id":"u1","name":"Ann"},"attachments":[],"n":7,"nothing":null},"user":{"id":"u1"},"watcher_count":2,"created_at":"2024-01-01T00:00:00.000Z","request_info":{"type":"client","ip":"86.84.2.2","ext":"device-id=123"}}'

# ingest_verify: 32 header bytes (all zero: one app, its key, a correct signature, no
# Content-Encoding, the default limit), then the body as sent.
zeros() { head -c 32 /dev/zero; }
for dir in "$fixtures"/*/ "$fixtures"/_invalid/*/; do
    case="$(basename "$dir")"
    [ -f "$dir/body.json" ] || continue
    { zeros; cat "$dir/body.json"; } >"$corpus/ingest_verify/seed-$case.json"
    # Already compressed: verify recognises gzip by its magic bytes.
    [ -f "$dir/body.gz" ] && { zeros; cat "$dir/body.gz"; } >"$corpus/ingest_verify/seed-$case.gz"
done
{ zeros; printf '%s' "$rich_body"; } >"$corpus/ingest_verify/seed-rich.json"
{ zeros; printf '%s' "$rich_body" | gzip -9n; } >"$corpus/ingest_verify/seed-rich.gz"
# Synchronous-hook and pending-message bodies (passthrough requests; no `type`).
for file in "$repo"/tests/fixtures/sync-hooks/*.json; do
    { zeros; cat "$file"; } >"$corpus/ingest_verify/seed-hook-$(basename "$file")"
done
# Two gzip members back to back (verify decodes all members).
{ zeros; printf '{"type":' | gzip -n; printf '"x"}' | gzip -n; } >"$corpus/ingest_verify/seed-two-members.gz"

# config_parse: the shipped routes.yaml and every config text of tests/config.rs (the `|`
# margin stripped).
cp "$repo/routes.yaml" "$corpus/config_parse/seed-routes.yaml"
awk -v out="$corpus/config_parse/seed-config-rs" '
    /yaml: r#"$/ || /^const EVERY_KEY: &str = r#"$/ { n++; file = sprintf("%s-%02d.yaml", out, n); inside = 1; next }
    inside && /^ *"#/ { inside = 0; close(file); next }
    inside {
        line = $0
        sub(/^ *\|/, "", line)
        if ($0 ~ /^ *\|/) print line > file
    }
' "$repo/tests/config.rs"

# template: the template, a NUL, the event JSON.
templates=(
    "{cid}"
    "{message.user.id}"
    "{message.user.id|user.id|'none'}"
    "room-{channel_id}/{type}"
    "{message.n}"
    "{missing|cid}"
    "{missing|unknown}"
    "{message.nothing|\"x y\"}"
    "{message.user|type}"
    "static"
    "{a..b}"
    "{'lit'|cid}"
    "}{cid}"
)
i=0
for t in "${templates[@]}"; do
    i=$((i + 1))
    { printf '%s\0' "$t"; printf '%s' "$rich_body"; } >"$corpus/template/seed-$(printf %02d $i).txt"
done
{ printf '{type|cid}\0'; cat "$fixtures/message.new/body.json"; } >"$corpus/template/seed-fixture.txt"
# Booleans and numbers, which render as their JSON text, and an object, which renders nothing.
printf '{flag}\0{"flag":true}' >"$corpus/template/seed-bool.txt"
printf '{n.x|flag|'"'"'none'"'"'}-{o|n.y}\0{"n":{"x":1.5e3,"y":-7},"flag":false,"o":{}}' \
    >"$corpus/template/seed-numbers.txt"

# spool_frames: mode byte, then the input. Odd mode: bytes that `arbitrary` turns into
# records, written as a valid segment, then damaged; any bytes do, so a few patterns. Even
# mode: raw bytes for every decoder; records need no checksum, so some real ones.
sf="$corpus/spool_frames"
printf '\x01' >"$sf/seed-built-empty"
{ printf '\x01'; head -c 256 /dev/zero; } >"$sf/seed-built-zeros"
{ printf '\x01'; printf '%s' "$rich_body"; } >"$sf/seed-built-text"
{ printf '\x03\x07\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x02\x03\x01\x05'; printf 'message.new%.0s' 1 2 3; } >"$sf/seed-built-groups"
# Records (kind, then LEB128 fields): Delivered{route 1, seq 300}, DropPending{route 2},
# Route{3, "sqs"}, an Event with an id, a type, a path, two routes and a small body.
printf '\x00\x03\x01\xac\x02' >"$sf/seed-record-delivered"
printf '\x00\x09\x02' >"$sf/seed-record-drop-pending"
printf '\x00\x01\x03\x03sqs' >"$sf/seed-record-route"
printf '\x00\x02\x01\x02id\x07\x00\x03sig\x01\x0bmessage.new\x01\x09/webhooks\x02\x00\x07\x01\x08\x02{}' \
    >"$sf/seed-record-event"
# The same event traced (kind 13, flags 2): trace id, span id, flags 1, tracestate "ro=1".
printf '\x00\x0d\x02\x01\x02id\x07\x00\x03sig\x01\x0bmessage.new\x01\x09/webhooks0af7651916cd43ddb7ad6b71\x01\x04ro=1\x02\x00\x07\x01\x08\x02{}' \
    >"$sf/seed-record-event-traced"
# A checkpoint body (the target seals it): keys 5 and 6, route 0 named "a", event 1 (in
# segment 1 at 40, 8 bytes, received at 7), pending on route 0 (due 7, no attempts), its id
# remembered (received 7, fingerprint 42); no message group. Its first 8 bytes make the lsn.
printf '\x00\x05\x06\x01\x00\x01a\x01\x01\x01\x28\x08\x07\x01\x00\x01\x07\x01\x00\x00\x00\x00\x00\x01\x07\x2a\x01' \
    >"$sf/seed-checkpoint-body"
# The same state as a version 2 body: keys, name; 1 event, 1 id: seq 1, segment 1 (+1
# zigzagged), offset 40, length 8, received at 7 (zigzagged), due 0 and remembered,
# fingerprint 42 (8 bytes); route 0 with one bucket (seq 1's bit set), no others, no dead.
{
    printf '\x00\x05\x06\x01\x00\x01a\x01\x01\x01\x02\x28\x08\x0e\x01\x2a\x00\x00\x00\x00\x00\x00\x00'
    printf '\x01\x00\x01\x00\x02'
    head -c 127 /dev/zero
    printf '\x00\x00'
} >"$sf/seed-checkpoint-body-v2"
# A segment header's first bytes, and a group's (checksums wrong: the rejection paths).
{ printf '\x00HFSG\x01'; head -c 60 /dev/zero; } >"$sf/seed-raw-segment-header"
{ printf '\x00'; head -c 8 /dev/zero; printf 'HFGR\x01'; head -c 60 /dev/zero; } >"$sf/seed-raw-group"

du -sh "$corpus"/*
