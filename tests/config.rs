//! routes.yaml validation, end to end through `hookfan::config::from_str`.
//!
//! The broken-config table below is one test per row: a config text, the environment its
//! `${VAR}`s see, and every diagnostic expected as (line, column, message substring). A row
//! passes only if exactly those positions are reported and each message contains its
//! substring. Line and column are 1-based and point into the file as the user wrote it
//! (before `${VAR}` substitution). Config texts are written with a `|` margin, so line 1 is
//! the first `|` line.
//!
//! After the table: the shipped routes.yaml, a config using every key, and secrets in
//! `Debug` output.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hookfan::config::{self, Config, ConfigError, Destination, Problem, RetryPolicy};

/// Strips the `|` margin: every non-blank line must start (after indentation) with `|`.
fn margin(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        match line.trim_start().strip_prefix('|') {
            Some(content) => {
                out.push_str(content);
                out.push('\n');
            }
            None => assert!(
                line.trim().is_empty(),
                "config text line without a `|` margin: {line:?}"
            ),
        }
    }
    out
}

/// A `${VAR}` lookup over a fixed list of variables.
fn lookup_in<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

fn numbered(text: &str) -> String {
    text.lines()
        .enumerate()
        .map(|(i, line)| format!("{:>4} | {line}\n", i + 1))
        .collect()
}

/// Validates `yaml` (with its margin) and asserts the diagnostics are exactly `expect`.
fn check(vars: &[(&str, &str)], yaml: &str, expect: &[(usize, usize, &str)]) {
    let text = margin(yaml);
    let err = match config::from_str("routes.yaml", &text, lookup_in(vars)) {
        Ok(config) => panic!(
            "expected diagnostics, but the config validated:\n{}{config:#?}",
            numbered(&text)
        ),
        Err(err) => err,
    };
    let rendered = err.to_string();
    let ConfigError::Invalid { file, diagnostics } = err else {
        panic!("expected ConfigError::Invalid, got: {rendered}");
    };
    assert_eq!(file, "routes.yaml");

    let report = format!(
        "config:\n{}expected:\n{}got:\n{}",
        numbered(&text),
        expect
            .iter()
            .map(|(line, column, message)| format!("  {line}:{column}: …{message}…\n"))
            .collect::<String>(),
        diagnostics
            .iter()
            .map(|d| format!("  {}:{}: {}\n", d.line, d.column, d.message))
            .collect::<String>(),
    );

    let mut got: Vec<(usize, usize)> = diagnostics.iter().map(|d| (d.line, d.column)).collect();
    let mut want: Vec<(usize, usize)> = expect.iter().map(|&(l, c, _)| (l, c)).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "reported positions differ\n{report}");

    for &(line, column, needle) in expect {
        assert!(
            diagnostics
                .iter()
                .any(|d| d.line == line && d.column == column && d.message.contains(needle)),
            "no diagnostic at {line}:{column} contains {needle:?}\n{report}"
        );
    }
    for d in &diagnostics {
        let shown = format!("routes.yaml:{}:{}: {}", d.line, d.column, d.message);
        assert!(
            rendered.lines().any(|l| l == shown),
            "Display lacks {shown:?}:\n{rendered}"
        );
    }
}

/// One `#[test]` per row: `name { env: [(VAR, value)...], yaml: "...", expect: [(line, column,
/// "message substring")...] }`.
macro_rules! broken_configs {
    ($(
        $name:ident {
            env: [$(($var:literal, $value:literal)),* $(,)?],
            yaml: $yaml:literal,
            expect: [$(($line:literal, $column:literal, $message:literal)),* $(,)?] $(,)?
        }
    )*) => {$(
        #[test]
        fn $name() {
            check(&[$(($var, $value)),*], $yaml, &[$(($line, $column, $message)),*]);
        }
    )*};
}

broken_configs! {
    // ---- Synchronous hooks and request paths ------------------------------------------------

    passthrough_blocks_need_one_exact_path_each_and_an_http_handler {
        env: [],
        yaml: r#"
            |passthrough:
            |  - path: stream/bms
            |    url: http://127.0.0.1:3000/bms
            |  - path: /cmd?type=x
            |    url: ftp://example.com/x
            |  - path: /dup
            |    url: http://127.0.0.1:3000/a
            |    timeout: 0s
            |    concurrency: 0
            |  - path: /dup
            |    url: not a url
            |  - url: http://127.0.0.1:3000/no-path
            |    retries: 3
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (13, 5, r#"passthrough: unknown key "retries" (expected one of path, url, timeout, concurrency)"#),
            (12, 5, r#"passthrough: missing "path""#),
        ],
    }

    passthrough_values_are_checked_each_with_its_position {
        env: [],
        yaml: r#"
            |passthrough:
            |  - path: stream/bms
            |    url: http://127.0.0.1:3000/bms
            |  - path: /cmd?type=x
            |    url: ftp://example.com/x
            |  - path: /dup
            |    url: http://127.0.0.1:3000/a
            |    timeout: 0s
            |    concurrency: 0
            |  - path: /dup
            |    url: not a url
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (2, 11, "must be one exact request path starting with /"),
            (4, 11, "without a query"),
            (5, 10, "must be an http:// or https:// URL"),
            (8, 14, "timeout must be greater than 0"),
            (9, 18, "concurrency must be between 1 and 4096"),
            (10, 11, "used by another passthrough block"),
            (11, 10, "is not a URL"),
        ],
    }

    route_paths_must_be_absolute_and_without_a_query {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    paths: [/ok, pending/*, "/x?y=1"]
            |    http: { url: "http://127.0.0.1:3000", forward_path: true }
        "#,
        expect: [
            (7, 18, r#"path "pending/*" must start with /"#),
            (7, 29, "paths are matched without their query"),
        ],
    }

    forward_path_is_true_or_false {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    http: { url: "http://127.0.0.1:3000", forward_path: yes-please }
        "#,
        expect: [(7, 57, r#"forward_path: invalid type: string "yes-please", expected a boolean"#)],
    }

    a_config_without_a_webhook_listener_cannot_have_passthrough_blocks {
        env: [],
        yaml: r#"
            |listen: off
            |passthrough:
            |  - path: /bms
            |    url: http://127.0.0.1:3000/bms
            |apps:
            |  - api_key: k
            |    api_secret: s
            |sources:
            |  - name: q
            |    sqs: { queue_url: "https://sqs.us-east-1.amazonaws.com/1/q", wait_time: 0s }
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (3, 3, "synchronous hooks arrive on the webhook listener, and there is none"),
            (10, 77, "wait_time must be whole seconds from 1s to 20s"),
        ],
    }

    a_listen_address_without_apps_is_refused_rather_than_dropped {
        env: [],
        yaml: r#"
            |listen: 0.0.0.0:8080
            |sources:
            |  - name: q
            |    sqs: { queue_url: "https://sqs.us-east-1.amazonaws.com/1/q" }
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(1, 9, "a webhook listener needs apps")],
    }

    dedup_on_redis_needs_a_redis_url_and_bounded_timings {
        env: [],
        yaml: r#"
            |dedup:
            |  backend: redis
            |  url: "http://not-redis"
            |  timeout: 5s
            |  pending_ttl: 2s
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (3, 8, "dedup: url is not a Redis URL"),
            (4, 12, "timeout must be greater than 0 and at most 2s"),
            (5, 16, "pending_ttl must be between 6s"),
        ],
    }

    dedup_backend_is_spool_or_redis {
        env: [],
        yaml: r#"
            |dedup: { backend: memcached, ttl: 1s }
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(1, 30, r#"dedup: unknown key "ttl" (expected one of backend, url, cluster, sentinel, tls, key_prefix, timeout, pending_ttl)"#)],
    }

    dedup_takes_one_topology_and_each_node_is_checked_at_its_line {
        env: [],
        yaml: r#"
            |dedup:
            |  backend: redis
            |  url: redis://a:6379
            |  cluster:
            |    nodes:
            |      - redis://:one@b:7000
            |      - "http://c:7000"
            |  sentinel: { master: m, nodes: [] }
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(2, 3, "dedup: give one of url, cluster and sentinel, not several")],
    }

    dedup_cluster_nodes_must_be_redis_urls_and_agree {
        env: [],
        yaml: r#"
            |dedup:
            |  backend: redis
            |  cluster:
            |    nodes:
            |      - redis://:one@b:7000
            |      - "http://c:7000"
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(6, 9, "dedup: cluster.nodes[1] is not a Redis URL")],
    }

    dedup_cluster_nodes_share_one_password {
        env: [],
        yaml: r#"
            |dedup:
            |  backend: redis
            |  cluster: { nodes: ["redis://:one@b:7000", "redis://:two@c:7000"] }
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(3, 21, "dedup: cluster: the nodes must share one user, password, database and scheme")],
    }

    dedup_sentinel_needs_a_master_name_and_sentinels {
        env: [],
        yaml: r#"
            |dedup:
            |  backend: redis
            |  sentinel:
            |    master: ""
            |    nodes: []
            |    db: -1
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (4, 13, "dedup: sentinel: master is empty"),
            (6, 9, "dedup: sentinel: db must be 0 or more"),
            (5, 12, "dedup: sentinel.nodes is empty"),
        ],
    }

    dedup_tls_is_for_rediss_and_a_client_certificate_needs_its_key {
        env: [],
        yaml: r#"
            |dedup:
            |  backend: redis
            |  url: redis://a:6379
            |  tls: { ca_file: "", cert_file: ./client.pem }
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (4, 19, "dedup: tls.ca_file is empty"),
            (4, 8, "dedup: tls: cert_file and key_file go together"),
        ],
    }

    dedup_tls_needs_rediss_urls {
        env: [],
        yaml: r#"
            |dedup:
            |  backend: redis
            |  url: redis://a:6379
            |  tls: { ca_file: ./ca.pem }
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(4, 8, "dedup: tls is for rediss:// URLs")],
    }

    // ---- The ingest listener: tls, allowed_ips, max_event_age, limits -----------------------

    tls_needs_both_files_and_no_other_keys {
        env: [],
        yaml: r#"
            |tls:
            |  cert: /etc/tls/cert.pem
            |  chain: /etc/tls/chain.pem
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (2, 3, r#"tls: missing "key""#),
            (3, 3, r#"tls: unknown key "chain" (expected one of cert, key)"#),
        ],
    }

    an_empty_tls_path_says_how_to_serve_plain_http {
        env: [("CERT", "")],
        yaml: r#"
            |tls: { cert: "${CERT}", key: /etc/tls/key.pem }
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(1, 14, "tls.cert is empty: give the path of a PEM file, or remove tls: to serve plain HTTP")],
    }

    every_bad_allowed_ip_is_reported_at_its_entry {
        env: [],
        yaml: r#"
            |allowed_ips:
            |  - 10.0.0.0/8
            |  - 10.0.0.0/33
            |  - stream.example.com
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (3, 5, r#"allowed_ips: "10.0.0.0/33" is not an IP address or CIDR network"#),
            (4, 5, r#"allowed_ips: "stream.example.com" is not an IP address or CIDR network"#),
        ],
    }

    an_empty_allowed_ips_list_would_refuse_everyone {
        env: [],
        yaml: r#"
            |allowed_ips: []
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(1, 14, "allowed_ips is empty, which would refuse every sender")],
    }

    a_max_event_age_shorter_than_streams_retries_is_refused {
        env: [],
        yaml: r#"
            |max_event_age: 15s
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(1, 16, "max_event_age must be at least 1m")],
    }

    the_body_buffer_must_hold_at_least_one_largest_webhook {
        env: [],
        yaml: r#"
            |max_body_bytes: 2097152
            |max_buffered_bytes: 1048576
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(2, 21, "max_buffered_bytes (1048576) is less than max_body_bytes (2097152)")],
    }

    spool_segments_must_be_between_one_mebibyte_and_one_gibibyte {
        env: [],
        yaml: r#"
            |spool_segment_bytes: 1000
            |apps: [{ api_key: k, api_secret: s }]
            |routes: [{ name: a, event_types: [], file: { path: ./a.jsonl } }]
        "#,
        expect: [(1, 22, "spool_segment_bytes: must be between 1048576 (1 MiB) and 1073741824 (1 GiB)")],
    }

    the_largest_webhook_must_fit_in_half_a_spool_segment {
        env: [],
        yaml: r#"
            |max_body_bytes: 16777217
            |apps: [{ api_key: k, api_secret: s }]
            |routes: [{ name: a, event_types: [], file: { path: ./a.jsonl } }]
        "#,
        expect: [(1, 17, "spool_segment_bytes (33554432) is less than twice max_body_bytes (16777217): a webhook of the largest size must fit in half a spool segment; raise spool_segment_bytes")],
    }

    a_spool_segment_too_small_for_the_largest_webhook_is_reported_at_the_segment_size {
        env: [],
        yaml: r#"
            |max_body_bytes: 1048576
            |spool_segment_bytes: 1048576
            |apps: [{ api_key: k, api_secret: s }]
            |routes: [{ name: a, event_types: [], file: { path: ./a.jsonl } }]
        "#,
        expect: [(2, 22, "spool_segment_bytes (1048576) is less than twice max_body_bytes (1048576)")],
    }

    durations_longer_than_ten_years_are_refused {
        env: [],
        yaml: r#"
            |dedup_window: 500000000000y
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl, retry: { max_backoff: 3651d } }
        "#,
        expect: [
            (1, 15, r#"dedup_window: "500000000000y" is longer than hookfan supports (at most 3650d)"#),
            (8, 52, r#"max_backoff: "3651d" is longer than hookfan supports"#),
        ],
    }

        listener_limits_must_be_positive {
        env: [],
        yaml: r#"
            |max_connections: 0
            |request_timeout: 0s
            |max_event_age: soon
            |delivery_nice: 20
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (1, 18, "max_connections must be between 1 and 1000000"),
            (2, 18, "request_timeout must be greater than 0"),
            (3, 16, r#"max_event_age: "soon" is not a duration"#),
            (4, 16, "delivery_nice must be between 0 (the same priority as ingest) and 19"),
        ],
    }

    // ---- Keys: unknown, missing, destinations (the lint pass, all reported at once) --------

    an_unknown_top_level_key_is_reported_at_the_key {
        env: [],
        yaml: r#"
            |lisen: 0.0.0.0:8080
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(1, 1, r#"unknown key "lisen" (expected one of listen, tls, allowed_ips, max_event_age, max_connections, request_timeout, max_buffered_bytes, admin_listen, admin_token, data_dir, spool_segment_bytes, max_body_bytes, dedup_window, shutdown_grace, delivery_nice, apps, routes, passthrough, sources, dedup, tracing)"#)],
    }

    unknown_keys_in_different_routes_and_blocks_are_all_reported_at_once {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: crm
            |    event_types: []
            |    htp:
            |      url: http://crm.example.com/hooks
            |  - name: billing
            |    event_types: [message.new]
            |    http:
            |      url: http://billing.example.com/hooks
            |      timout: 5s
            |      retry:
            |        initial_backof: 1s
            |  - name: audit
            |    enable: false
            |    event_types: []
            |    file:
            |      path: ./audit.jsonl
            |      mode: append
        "#,
        expect: [
            (7, 5, r#"route "crm": unknown destination key "htp" (expected one of http, file, sqs, sns)"#),
            (13, 7, r#"route "billing": http: unknown key "timout" (expected one of url, timeout, concurrency, retry, api_secret, forward_path, rate_limit, burst)"#),
            (15, 9, r#"route "billing": http: retry: unknown key "initial_backof" (expected one of max_age, initial_backoff, max_backoff)"#),
            (17, 5, r#"route "audit": unknown key "enable" (expected one of name, event_types, paths, enabled, match, not, http, file, sqs, sns)"#),
            (21, 7, r#"route "audit": file: unknown key "mode" (expected one of path, retry, rate_limit, burst)"#),
        ],
    }

    a_route_without_a_destination_is_reported_at_the_start_of_the_route {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: crm
            |    event_types: []
            |    enabled: true
        "#,
        expect: [(5, 5, r#"route "crm": no destination (add exactly one of http, file, sqs, sns)"#)],
    }

    a_destination_key_with_nothing_under_it_is_refused_instead_of_dropping_the_route {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: crm
            |    event_types: []
            |    http:
            |  - name: all
            |    event_types: []
            |    file: { path: ./all.jsonl }
        "#,
        expect: [(7, 5, r#"route "crm": http: needs its settings as a mapping"#)],
    }

    a_route_with_two_destinations_is_reported_at_the_start_of_the_route {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: crm
            |    event_types: []
            |    http: { url: http://crm.example.com/hooks }
            |    file: { path: ./crm.jsonl }
        "#,
        expect: [(5, 5, r#"route "crm": has 2 destinations (http, file); a route has exactly one"#)],
    }

    a_route_without_event_types_is_reported_with_the_hint_to_write_an_empty_list {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: crm
            |    http: { url: http://crm.example.com/hooks }
        "#,
        expect: [(5, 5, r#"route "crm": missing "event_types" (use [] for every event"#)],
    }

    a_route_without_a_name_is_labelled_by_its_position_in_the_list {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
            |  - event_types: []
            |    file: { path: ./b.jsonl }
        "#,
        expect: [(8, 5, r#"route #2: missing "name""#)],
    }

    a_flow_style_route_missing_a_key_is_reported_at_its_opening_brace {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - { name: crm, http: { url: http://crm.example.com/hooks } }
        "#,
        expect: [(5, 5, r#"route "crm": missing "event_types""#)],
    }

    an_app_with_a_misspelt_secret_key_reports_both_the_unknown_and_the_missing_key {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: k
            |    secret: s
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (2, 5, r#"app: missing "api_secret""#),
            (3, 5, r#"app: unknown key "secret" (expected one of api_key, api_secret)"#),
        ],
    }

    a_top_level_list_is_reported_as_not_a_mapping {
        env: [],
        yaml: r#"
            |- apps
            |- routes
        "#,
        expect: [(1, 1, "the top level must be a mapping with `apps:` and `routes:`")],
    }

    // ---- ${VAR} substitution -----------------------------------------------------------------

    an_unset_variable_is_named_and_reported_at_its_dollar_sign {
        env: [("STREAM_API_KEY", "key")],
        yaml: r#"
            |apps:
            |  - api_key: ${STREAM_API_KEY}
            |    api_secret: ${STREAM_API_SECRET}
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(3, 17, "environment variable STREAM_API_SECRET is not set (set it, or give a default with ${STREAM_API_SECRET:-default})")],
    }

    unset_variables_on_different_lines_are_all_reported_together_with_unknown_keys {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: ${STREAM_API_KEY}
            |    api_secret: ${STREAM_API_SECRET}
            |routes:
            |  - name: crm
            |    event_types: []
            |    http:
            |      url: https://${CRM_HOST}/hooks
            |      timout: 5s
        "#,
        expect: [
            (2, 14, "environment variable STREAM_API_KEY is not set"),
            (3, 17, "environment variable STREAM_API_SECRET is not set"),
            (8, 20, "environment variable CRM_HOST is not set"),
            (9, 7, r#"route "crm": http: unknown key "timout""#),
        ],
    }

    a_default_is_used_when_the_variable_is_unset_or_empty {
        env: [("WINDOW", "")],
        yaml: r#"
            |listen: ${HOOKFAN_LISTEN:-nonsense}
            |dedup_window: ${WINDOW:-forever}
            |apps: [{ api_key: k, api_secret: s }]
            |routes: [{ name: a, event_types: [], file: { path: ./a.jsonl } }]
        "#,
        expect: [
            (1, 9, r#"listen: "nonsense" is not an IP:PORT address"#),
            (2, 15, r#"dedup_window: "forever" is not a duration"#),
        ],
    }

    variables_inside_comments_are_ignored {
        env: [],
        yaml: r#"
            |# api_secret: ${OLD_SECRET}
            |apps:
            |  - api_key: k   # was ${OLD_KEY}
            |    api_secret: s
            |routes: []
        "#,
        expect: [(5, 9, "no routes configured: add at least one route")],
    }

    malformed_variable_references_are_reported_at_their_dollar_sign {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: ${1X}
            |    api_secret: ${OPEN
            |routes: []
        "#,
        expect: [
            (2, 14, r#""${1X}" is not a valid variable reference"#),
            (3, 17, r#"unclosed "${": write ${NAME} or ${NAME:-default}"#),
        ],
    }

    an_app_secret_from_a_variable_set_to_empty_is_reported_on_its_own_line {
        env: [("STREAM_API_SECRET", "")],
        yaml: r#"
            |apps:
            |  - api_key: k
            |    api_secret: ${STREAM_API_SECRET}
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(3, 5, "app: api_secret is empty (is its environment variable set to an empty value?)")],
    }

    a_column_after_a_substituted_variable_points_into_the_text_as_written {
        env: [("CRM_URL", "https://crm.example.com/hooks")],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: crm
            |    event_types: []
            |    http: { url: ${CRM_URL}, concurrency: 0 }
        "#,
        expect: [(5, 43, r#"route "crm": http.concurrency must be between 1 and 1024"#)],
    }

    // ---- Values (validation, all reported at once, each at its value) -----------------------

    a_duplicate_route_name_is_reported_at_the_second_name {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: crm
            |    event_types: []
            |    file: { path: ./a.jsonl }
            |  - name: crm
            |    event_types: []
            |    file: { path: ./b.jsonl }
        "#,
        expect: [(6, 11, r#"route "crm": the name is used by another route; names must be unique"#)],
    }

    two_file_routes_writing_one_file_are_reported_at_the_second_path {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: messages
            |    event_types: [message.new]
            |    file: { path: ./events.jsonl }
            |  - name: reactions
            |    event_types: [reaction.new]
            |    file: { path: ./events.jsonl }
        "#,
        expect: [(8, 19, r#"route "reactions": file.path "./events.jsonl" is written by route "messages" too; give each route its own file, or one route the event types of both"#)],
    }

    route_names_with_characters_other_than_letters_digits_dash_underscore_dot_are_rejected {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: crm sync
            |    event_types: []
            |    file: { path: ./a.jsonl }
            |  - name: crm/sync
            |    event_types: []
            |    file: { path: ./b.jsonl }
            |  - name: ""
            |    event_types: []
            |    file: { path: ./c.jsonl }
        "#,
        expect: [
            (3, 11, r#"route "crm sync": a name is letters, digits, '-', '_' and '.' only"#),
            (6, 11, r#"route "crm/sync": a name is letters, digits"#),
            (9, 11, r#"route "": a name is letters, digits"#),
        ],
    }

    durations_that_do_not_parse_are_all_reported_at_their_values {
        env: [],
        yaml: r#"
            |dedup_window: forever
            |shutdown_grace: 10 parsecs
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: crm
            |    event_types: []
            |    http:
            |      url: https://crm.example.com/hooks
            |      timeout: 6
            |      retry: { max_age: one day }
        "#,
        expect: [
            (1, 15, r#"dedup_window: "forever" is not a duration"#),
            (2, 17, r#"shutdown_grace: "10 parsecs" is not a duration"#),
            (9, 16, r#"timeout: "6" is not a duration (time unit needed"#),
            (10, 25, r#"max_age: "one day" is not a duration"#),
        ],
    }

    an_initial_backoff_above_max_backoff_is_reported_at_the_initial_backoff {
        // Could also defensibly be the `retry:` key (7:7); not the unrelated `max_age` line.
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: crm
            |    event_types: []
            |    http:
            |      url: https://crm.example.com/hooks
            |      retry:
            |        max_age: 1h
            |        initial_backoff: 10m
            |        max_backoff: 1m
        "#,
        expect: [(9, 26, r#"route "crm": retry: initial_backoff (10m) is greater than max_backoff (1m)"#)],
    }

    urls_that_are_not_http_or_https_with_a_host_are_rejected {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: crm
            |    event_types: []
            |    http: { url: not a url }
            |  - name: ftp
            |    event_types: []
            |    http: { url: "ftp://files.example.com/in" }
        "#,
        expect: [
            (5, 18, r#"route "crm": http.url "not a url" is not a URL"#),
            (8, 18, r#"route "ftp": http.url "ftp://files.example.com/in" must be an http:// or https:// URL with a host"#),
        ],
    }

    concurrency_outside_1_to_1024_is_rejected {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: none
            |    event_types: []
            |    http: { url: http://crm/, concurrency: 0 }
            |  - name: lots
            |    event_types: []
            |    http:
            |      url: http://crm/
            |      concurrency: 5000
        "#,
        expect: [
            (5, 44, r#"route "none": http.concurrency must be between 1 and 1024"#),
            (10, 20, r#"route "lots": http.concurrency must be between 1 and 1024"#),
        ],
    }

    an_empty_event_type_entry_is_reported_at_the_entry {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: crm
            |    event_types: [message.new, ""]
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(4, 32, r#"route "crm": event type "" is empty or contains white space"#)],
    }

    every_bad_event_type_entry_of_a_route_is_reported_at_once {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: crm
            |    event_types: [message.new, "", "message updated"]
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (4, 32, r#"route "crm": event type "" is empty"#),
            (4, 36, r#"route "crm": event type "message updated" is empty or contains white space"#),
        ],
    }

    bad_listen_data_dir_and_max_body_bytes_are_all_reported_at_their_values {
        env: [],
        yaml: r#"
            |listen: nonsense
            |data_dir: ""
            |max_body_bytes: 0
            |apps: [{ api_key: k, api_secret: s }]
            |routes: [{ name: a, event_types: [], file: { path: ./a.jsonl } }]
        "#,
        expect: [
            (1, 9, r#"listen: "nonsense" is not an IP:PORT address (for example 0.0.0.0:8080"#),
            (2, 11, "data_dir: must not be empty"),
            (3, 17, "max_body_bytes: must be between 1 and 268435456"),
        ],
    }

    an_empty_apps_list_is_reported_at_the_list {
        env: [],
        yaml: r#"
            |apps: []
            |routes: [{ name: a, event_types: [], file: { path: ./a.jsonl } }]
        "#,
        expect: [(1, 7, "no apps configured: add `apps: [{ api_key: ..., api_secret: ... }]`")],
    }

    an_apps_key_with_nothing_under_it_is_reported_on_its_own_line {
        env: [],
        yaml: r#"
            |apps:
            |routes: [{ name: a, event_types: [], file: { path: ./a.jsonl } }]
        "#,
        expect: [(1, 1, "no apps configured")],
    }

    a_missing_apps_key_is_reported_at_the_start_of_the_file {
        env: [],
        yaml: r#"
            |routes:
            |  - name: a
            |    event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(1, 1, "no apps configured")],
    }

    a_routes_key_with_nothing_under_it_at_the_end_of_the_file_is_reported_on_its_own_line {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
        "#,
        expect: [(2, 1, "no routes configured")],
    }

    a_duplicate_or_empty_api_key_is_reported_at_the_key_value {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: k
            |    api_secret: s
            |  - api_key: k
            |    api_secret: t
            |  - { api_key: "", api_secret: u }
            |routes: [{ name: a, event_types: [], file: { path: ./a.jsonl } }]
        "#,
        expect: [
            (4, 14, r#"app: api_key "k" is listed twice"#),
            (6, 16, "app: api_key is empty"),
        ],
    }

    an_empty_route_api_secret_and_an_empty_file_path_are_rejected {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: crm
            |    event_types: []
            |    http: { url: http://crm/, api_secret: "" }
            |  - name: audit
            |    event_types: []
            |    file: { path: "" }
        "#,
        expect: [
            (5, 43, r#"route "crm": http.api_secret is empty; remove it to forward Stream's own signature"#),
            (8, 19, r#"route "audit": file.path is empty"#),
        ],
    }

    sqs_and_sns_destinations_report_every_problem_at_its_value {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: ordered
            |    event_types: []
            |    sqs: { queue_url: https://sqs.eu-west-1.amazonaws.com/1/chat.fifo, concurrency: 4 }
            |  - name: topic
            |    event_types: []
            |    sns:
            |      topic_arn: arn:aws:sqs:eu-west-1:1:t
            |      message_group_id: "{cid}"
            |      body: zipped
            |  - name: bad-url
            |    event_types: []
            |    sqs: { queue_url: not-a-url }
            |  - name: template
            |    event_types: []
            |    sqs:
            |      queue_url: https://sqs.eu-west-1.amazonaws.com/1/q.fifo
            |      message_group_id: "{cid"
        "#,
        expect: [
            (5, 23, r#"route "ordered": https://sqs.eu-west-1.amazonaws.com/1/chat.fifo is a FIFO queue: set sqs.message_group_id"#),
            (5, 85, r#"route "ordered": a FIFO sqs route delivers one batch at a time to keep order"#),
            (9, 18, r#"route "topic": sns.topic_arn "arn:aws:sqs:eu-west-1:1:t" is not a topic ARN"#),
            (10, 25, r#"route "topic": sns.message_group_id only applies to FIFO topics"#),
            (11, 13, r#"route "topic": sns.body "zipped" is not one of raw, stream_compressed"#),
            (14, 23, r#"route "bad-url": sqs.queue_url "not-a-url" is not a queue URL"#),
            (19, 25, r#"route "template": sqs.message_group_id: unclosed '{' in template "{cid""#),
        ],
    }

    a_bad_admin_listen_address_is_reported_at_its_value {
        env: [],
        yaml: r#"
            |admin_listen: localhost
            |apps: [{ api_key: k, api_secret: s }]
            |routes: [{ name: a, event_types: [], file: { path: ./a.jsonl } }]
        "#,
        expect: [(1, 15, r#"admin_listen: "localhost" is not an IP:PORT address (for example 127.0.0.1:9090), or off"#)],
    }

    a_topic_arn_in_an_sqs_block_is_an_unknown_key {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: wrong-key
            |    event_types: []
            |    sqs: { topic_arn: "arn:aws:sns:eu-west-1:1:t" }
        "#,
        expect: [(5, 12, r#"route "wrong-key": sqs: unknown key "topic_arn" (expected one of queue_url,"#)],
    }

    // ---- YAML syntax, types, empty files --------------------------------------------------

    a_yaml_syntax_error_has_its_line_and_comes_with_unset_variables {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: ${STREAM_API_KEY}
            |    api_secret: s
            |routes:
            |  - name: crm
            |   event_types: []
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (2, 14, "environment variable STREAM_API_KEY is not set"),
            (6, 15, "invalid YAML"),
        ],
    }

    a_value_of_the_wrong_type_gives_serdes_message_at_the_value {
        env: [],
        yaml: r#"
            |apps:
            |  - api_key: k
            |    api_secret: s
            |routes:
            |  - name: crm
            |    event_types: []
            |    http:
            |      url: http://crm/
            |      concurrency: many
        "#,
        expect: [(9, 20, r#"routes[0].http.concurrency: invalid type: string "many", expected usize"#)],
    }

    event_types_written_as_a_single_string_asks_for_a_list {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: crm
            |    event_types: message.new
            |    file: { path: ./a.jsonl }
        "#,
        expect: [(4, 18, r#"routes[0].event_types: invalid type: string "message.new", expected a sequence"#)],
    }

    a_key_written_twice_in_a_route_is_reported_at_the_second_one {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - event_types: []
            |    name: a
            |    file: { path: ./a.jsonl }
            |    name: b
        "#,
        expect: [(6, 5, r#"key "name" is written twice in this mapping (first on line 4)"#)],
    }

    an_empty_file_asks_for_apps_and_routes {
        env: [],
        yaml: "",
        expect: [(1, 1, "the file is empty: it needs at least `apps:` and `routes:`")],
    }

    a_tracing_block_with_values_out_of_range_names_each {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes: [{ name: a, event_types: [], file: { path: ./a.jsonl } }]
            |tracing:
            |  endpoint: grpc://collector:4317
            |  sample_ratio: 1.5
            |  queue_size: 0
        "#,
        expect: [
            (4, 13, "tracing: endpoint \"grpc://collector:4317\" is not an http(s) base URL"),
            (5, 17, "tracing: sample_ratio is the share of traces sampled, from 0 to 1"),
            (6, 15, "tracing: queue_size must be between 1 and 1000000"),
        ],
    }

    a_tracing_endpoint_with_credentials_points_to_the_headers_variable {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes: [{ name: a, event_types: [], file: { path: ./a.jsonl } }]
            |tracing: { endpoint: "https://otel:pw@collector:4318" }
        "#,
        expect: [(3, 22, "tracing: endpoint must not hold a user or password (the exporter sends none); give the collector's credentials as OTEL_EXPORTER_OTLP_HEADERS")],
    }

    a_tracing_header_is_the_environments_business {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes: [{ name: a, event_types: [], file: { path: ./a.jsonl } }]
            |tracing: { headers: { x: y } }
        "#,
        expect: [
            (3, 12, "tracing: unknown key \"headers\" (expected one of endpoint, sample_ratio, queue_size)"),
        ],
    }

    a_file_of_only_comments_counts_as_empty {
        env: [],
        yaml: r#"
            |# hookfan routes, to be written
        "#,
        expect: [(1, 1, "the file is empty")],
    }
}

// ---- How the diagnostics read -------------------------------------------------------------

fn diagnostics_of(vars: &[(&str, &str)], text: &str) -> (String, Vec<config::Diagnostic>) {
    match config::from_str("routes.yaml", text, lookup_in(vars)) {
        Err(err) => {
            let rendered = err.to_string();
            match err {
                ConfigError::Invalid { diagnostics, .. } => (rendered, diagnostics),
                other => panic!("expected ConfigError::Invalid, got {other}"),
            }
        }
        Ok(config) => panic!("expected diagnostics, got {config:#?}"),
    }
}

#[test]
fn the_error_renders_one_file_line_column_message_per_diagnostic_then_a_count() {
    let text = margin(
        r#"
        |apps: [{ api_key: k, api_secret: s }]
        |routes:
        |  - name: crm
        |    event_types: []
        |    htp: { url: http://crm/ }
        |    timeout: 5s
    "#,
    );
    let (rendered, _) = diagnostics_of(&[], &text);
    assert_eq!(
        rendered,
        "routes.yaml:5:5: route \"crm\": unknown destination key \"htp\" (expected one of http, file, sqs, sns)\n\
         routes.yaml:6:5: route \"crm\": unknown key \"timeout\" (expected one of name, event_types, paths, enabled, match, not, http, file, sqs, sns)\n\
         routes.yaml: 2 errors found"
    );
}

#[test]
fn diagnostics_from_every_stage_are_listed_in_file_order() {
    let text = margin(
        r#"
        |apps:
        |  - api_key: k
        |    api_secret: ${STREAM_API_SECRET}
        |routes:
        |  - name: crm
        |    htp: { url: http://crm/ }
        |  - event_types: []
        |    bogus: 1
        |    file: { path: ./a.jsonl }
        |listen: ${HOOKFAN_LISTEN}
    "#,
    );
    let (rendered, diagnostics) = diagnostics_of(&[], &text);
    let lines: Vec<usize> = diagnostics.iter().map(|d| d.line).collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted, "not in file order:\n{rendered}");
}

// ---- What kind of problem each is ----------------------------------------------------------

/// A diagnostic's line, kind and key path.
type Kind = (usize, Problem, Option<String>);

/// Every diagnostic of `text` as a [`Kind`], in file order.
fn kinds_of(vars: &[(&str, &str)], yaml: &str) -> Vec<Kind> {
    let (_, diagnostics) = diagnostics_of(vars, &margin(yaml));
    diagnostics
        .into_iter()
        .map(|d| (d.line, d.problem, d.path))
        .collect()
}

fn at(path: &str) -> Option<String> {
    Some(path.to_string())
}

#[test]
fn each_diagnostic_names_its_kind_and_the_key_path_it_is_about() {
    use Problem::*;
    let apps = "|apps: [{ api_key: k, api_secret: s }]";
    let cases: Vec<(&str, String, Vec<Kind>)> = vec![
        (
            "not YAML: no path, the text itself is wrong",
            format!("{apps}\n|routes: [\n"),
            vec![(3, Syntax, None)],
        ),
        (
            "the wrong shape: serde's error, with the path of the value it stands at",
            format!("{apps}\n|max_connections: many\n|routes: [{{ name: a, event_types: [], file: {{ path: ./a }} }}]\n"),
            vec![(2, Syntax, at("max_connections"))],
        ),
        (
            "an unset variable",
            format!("{apps}\n|listen: ${{NOPE}}\n|routes: [{{ name: a, event_types: [], file: {{ path: ./a }} }}]\n"),
            vec![(2, Environment, None)],
        ),
        (
            "an unknown key, a key written twice, a missing key, two destinations",
            format!(
                "{apps}\n|routes:\n|  - name: a\n|    event_types: []\n|    file: {{ path: ./a, colour: red }}\n\
                 |  - name: b\n|    name: c\n|    event_types: []\n|    http: {{ url: http://x/ }}\n\
                 |  - name: d\n|    file: {{ path: ./d }}\n|    sqs: {{ queue_url: http://q/1/q }}\n"
            ),
            vec![
                (5, UnknownKey, at("routes[0].file.colour")),
                (7, DuplicateKey, at("routes[1].name")),
                (10, MissingKey, at("routes[2]")),
                (10, Conflict, at("routes[2]")),
            ],
        ),
        (
            "values out of range, a name used twice, sizes that cannot hold together",
            format!(
                "{apps}\n|max_body_bytes: 1000\n|max_buffered_bytes: 10\n\
                 |routes:\n|  - name: a\n|    event_types: []\n|    http: {{ url: ftp://x/ }}\n\
                 |  - name: a\n|    event_types: []\n|    file: {{ path: ./a }}\n"
            ),
            vec![
                (3, Conflict, at("max_buffered_bytes")),
                (7, InvalidValue, at("routes[0].http.url")),
                (8, NotUnique, at("routes[1].name")),
            ],
        ),
    ];
    for (what, yaml, expect) in cases {
        assert_eq!(kinds_of(&[], &yaml), expect, "{what}");
    }
}

#[test]
fn an_event_type_stream_does_not_document_is_a_warning_of_its_own_kind() {
    let text = margin(
        r#"
        |apps: [{ api_key: k, api_secret: s }]
        |routes:
        |  - name: a
        |    event_types: [message.nwe]
        |    file: { path: ./a.jsonl }
    "#,
    );
    let config = config::from_str("routes.yaml", &text, lookup_in(&[])).expect("valid");
    let warnings: Vec<_> = config
        .warnings()
        .iter()
        .map(|w| (w.line, w.problem, w.path.clone()))
        .collect();
    assert_eq!(
        warnings,
        [(4, Problem::UnknownEventType, at("routes[0].event_types[0]"))]
    );
}

#[test]
fn the_readme_lists_every_problem_code() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    for problem in Problem::ALL {
        assert!(
            readme.contains(&format!("| `{}` |", problem.code())),
            "README.md's table of `check --json` codes lacks {problem:?} (`{}`)",
            problem.code()
        );
    }
}

// ---- Configs that validate --------------------------------------------------------------

fn stream_credentials(name: &str) -> Option<String> {
    match name {
        "STREAM_API_KEY" => Some("stream-key".into()),
        "STREAM_API_SECRET" => Some("stream-secret".into()),
        _ => None,
    }
}

fn shipped_routes_yaml() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("routes.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_shipped_routes_yaml_validates_with_only_the_stream_credentials_set() {
    let config = config::from_str("routes.yaml", &shipped_routes_yaml(), stream_credentials)
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(
        config.listen(),
        Some("0.0.0.0:8080".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(config.data_dir(), Path::new("./data"));
    assert_eq!(config.max_body_bytes(), 1_048_576);
    assert_eq!(config.dedup_window(), Duration::from_secs(10 * 60));
    assert_eq!(config.shutdown_grace(), Duration::from_secs(10));
    assert_eq!(
        config.delivery_nice(),
        5,
        "deliveries run below ingest by default"
    );

    assert_eq!(config.apps().len(), 1);
    assert_eq!(config.apps()[0].api_key(), "stream-key");
    assert_eq!(config.apps()[0].api_secret().expose(), b"stream-secret");

    let names: Vec<&str> = config.routes().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "everything-to-file",
            "moderation-handler",
            "all-events-to-sqs",
            "moderation-to-sns"
        ]
    );

    let everything = &config.routes()[0];
    assert!(everything.enabled);
    assert!(everything.filter.takes_everything());
    let Destination::File(file) = &everything.destination else {
        panic!("everything-to-file is not a file route: {everything:?}");
    };
    assert_eq!(file.path, Path::new("./data/events.jsonl"));
    assert_eq!(file.retry, RetryPolicy::DEFAULT);
    assert_eq!(everything.destination.concurrency(), 1);

    let moderation = &config.routes()[1];
    assert!(
        !moderation.enabled,
        "moderation-handler is disabled by default"
    );
    assert!(moderation.filter.matches(Some("message.new")));
    assert!(moderation.filter.matches(Some("message.updated")));
    assert!(moderation.filter.matches(Some("moderation.flagged")));
    assert!(!moderation.filter.matches(Some("reaction.new")));
    let Destination::Http(http) = &moderation.destination else {
        panic!("moderation-handler is not an http route: {moderation:?}");
    };
    assert_eq!(http.url.as_str(), "http://127.0.0.1:3000/webhooks/stream");
    assert_eq!(http.timeout, Duration::from_secs(6));
    assert_eq!(http.concurrency, 16);
    assert_eq!(http.retry, RetryPolicy::DEFAULT);
    assert!(http.api_secret.is_none());

    assert_eq!(
        config.admin_listen(),
        Some("127.0.0.1:9090".parse().unwrap())
    );
    let off = shipped_routes_yaml().replace(
        "admin_listen: ${HOOKFAN_ADMIN_LISTEN:-127.0.0.1:9090}",
        "admin_listen: off",
    );
    let off = config::from_str("routes.yaml", &off, stream_credentials).unwrap();
    assert_eq!(
        off.admin_listen(),
        None,
        "admin_listen: off turns the admin listener off"
    );

    // The AWS routes are there to switch on, and off until then: the quickstart needs no AWS.
    for (route, kind) in config.routes()[2..].iter().zip(["sqs", "sns"]) {
        assert!(!route.enabled, "{} is disabled by default", route.name);
        assert_eq!(route.destination.kind().key(), kind);
        assert!(!route.destination.ordered());
    }
}

#[test]
fn the_shipped_aws_routes_are_switched_on_by_their_variables() {
    let vars = [
        ("STREAM_API_KEY", "k"),
        ("STREAM_API_SECRET", "s"),
        ("SQS_ENABLED", "true"),
        (
            "SQS_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/events.fifo",
        ),
        ("SNS_ENABLED", "true"),
        ("SNS_TOPIC_ARN", "arn:aws:sns:eu-west-1:1:moderation"),
    ];
    let text = shipped_routes_yaml();
    let err = config::from_str("routes.yaml", &text, lookup_in(&vars)).unwrap_err();
    // A FIFO queue needs a message group: the shipped file says so rather than guessing.
    assert!(
        err.to_string()
            .contains("is a FIFO queue: set sqs.message_group_id"),
        "{err}"
    );

    let vars = [
        vars[0],
        vars[1],
        vars[2],
        (
            "SQS_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/events",
        ),
        vars[4],
        vars[5],
    ];
    let config = config::from_str("routes.yaml", &text, lookup_in(&vars)).unwrap();
    let sqs = &config.routes()[2];
    assert!(sqs.enabled);
    assert_eq!(
        sqs.destination.target(),
        "https://sqs.eu-west-1.amazonaws.com/1/events"
    );
    let sns = &config.routes()[3];
    assert!(sns.enabled);
    assert_eq!(
        sns.destination.target(),
        "arn:aws:sns:eu-west-1:1:moderation"
    );
}

#[test]
fn the_shipped_routes_yaml_takes_its_overrides_from_the_environment() {
    let vars = [
        ("STREAM_API_KEY", "stream-key"),
        ("STREAM_API_SECRET", "stream-secret"),
        ("HOOKFAN_LISTEN", "127.0.0.1:9999"),
        ("HOOKFAN_DATA_DIR", "/srv/hookfan"),
        ("MODERATION_HANDLER_ENABLED", "true"),
        ("MODERATION_HANDLER_URL", "https://mod.example.com/hook"),
    ];
    let config = config::from_str("routes.yaml", &shipped_routes_yaml(), lookup_in(&vars))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.listen(),
        Some("127.0.0.1:9999".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(config.data_dir(), Path::new("/srv/hookfan"));
    assert!(config.routes()[1].enabled);
    assert_eq!(
        config.routes()[1].destination.target(),
        "https://mod.example.com/hook"
    );
}

#[test]
fn the_shipped_routes_yaml_without_stream_credentials_names_both_variables() {
    let (_, diagnostics) = diagnostics_of(&[], &shipped_routes_yaml());
    let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(diagnostics.len(), 2, "{messages:?}");
    assert!(
        messages[0].contains("STREAM_API_KEY is not set"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("STREAM_API_SECRET is not set"),
        "{messages:?}"
    );
    assert_eq!(diagnostics[0].line, 12);
    assert_eq!(diagnostics[1].line, 13);
}

const EVERY_KEY: &str = r#"
    |listen: 127.0.0.1:9000
    |tls:
    |  cert: /etc/hookfan/tls/fullchain.pem
    |  key: /etc/hookfan/tls/privkey.pem
    |allowed_ips: [203.0.113.7, 10.1.2.3/8, "2001:db8::/32"]
    |max_event_age: 10m
    |max_connections: 256
    |request_timeout: 5s
    |max_buffered_bytes: 16777216
    |data_dir: /var/lib/hookfan
    |max_body_bytes: 2097152
    |dedup_window: 1h
    |shutdown_grace: 30s
    |delivery_nice: 12
    |tracing:
    |  endpoint: http://otel-collector:4318
    |  sample_ratio: 0.25
    |  queue_size: 512
    |apps:
    |  - api_key: key-one
    |    api_secret: ${STREAM_API_SECRET}
    |  - api_key: key-two
    |    api_secret: "literal $${NOT_A_VAR}"
    |passthrough:
    |  - path: /stream/before-message-send
    |    url: http://127.0.0.1:3000/bms?app=1
    |    timeout: 1200ms
    |    concurrency: 32
    |  - path: /stream/custom-commands
    |    url: http://127.0.0.1:3000/commands
    |routes:
    |  - name: crm
    |    enabled: true
    |    event_types: [message.new, "moderation.*"]
    |    paths: ["/stream", "/pending/*"]
    |    http:
    |      url: https://crm.example.com/hooks?x=1
    |      timeout: 2500ms
    |      concurrency: 16
    |      api_secret: ${CRM_SECRET}
    |      forward_path: true
    |      retry:
    |        max_age: 2h
    |        initial_backoff: 500ms
    |        max_backoff: 1m
    |  - name: audit.log_v2
    |    enabled: false
    |    event_types: ["*.deleted"]
    |    file:
    |      path: /var/log/hookfan/audit.jsonl
    |      retry: { max_age: 7d, initial_backoff: 2s, max_backoff: 2s }
"#;

const APP_SECRET: &str = "app-secret-never-printed";
const CRM_SECRET: &str = "crm-secret-never-printed";

fn every_key_config() -> Config {
    let vars = [
        ("STREAM_API_SECRET", APP_SECRET),
        ("CRM_SECRET", CRM_SECRET),
    ];
    config::from_str("routes.yaml", &margin(EVERY_KEY), lookup_in(&vars))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_config_using_every_key_parses_into_exactly_those_values() {
    let config = every_key_config();

    assert_eq!(
        config.listen(),
        Some("127.0.0.1:9000".parse::<SocketAddr>().unwrap())
    );
    let tls = config.tls().expect("tls is set");
    assert_eq!(tls.cert, Path::new("/etc/hookfan/tls/fullchain.pem"));
    assert_eq!(tls.key, Path::new("/etc/hookfan/tls/privkey.pem"));
    let allowed: Vec<String> = config
        .allowed_ips()
        .expect("allowed_ips is set")
        .iter()
        .map(|net| net.to_string())
        .collect();
    assert_eq!(
        allowed,
        ["203.0.113.7/32", "10.0.0.0/8", "2001:db8::/32"],
        "a bare address is a network of one; host bits of a CIDR are cleared"
    );
    assert_eq!(config.max_event_age(), Some(Duration::from_secs(600)));
    assert_eq!(config.max_connections(), 256);
    assert_eq!(config.request_timeout(), Duration::from_secs(5));
    assert_eq!(config.max_buffered_bytes(), 16 * 1024 * 1024);
    assert_eq!(config.data_dir(), Path::new("/var/lib/hookfan"));
    assert_eq!(config.max_body_bytes(), 2 * 1024 * 1024);
    assert_eq!(config.dedup_window(), Duration::from_secs(3600));
    assert_eq!(config.shutdown_grace(), Duration::from_secs(30));
    assert_eq!(config.delivery_nice(), 12);
    let tracing = config.tracing().expect("tracing is set");
    assert_eq!(
        tracing.endpoint.as_ref().map(|u| u.as_str()),
        Some("http://otel-collector:4318/")
    );
    assert_eq!(tracing.sample_ratio, Some(0.25));
    assert_eq!(tracing.queue_size, Some(512));

    assert_eq!(config.apps().len(), 2);
    assert_eq!(config.apps()[0].api_key(), "key-one");
    assert_eq!(
        config.apps()[0].api_secret().expose(),
        APP_SECRET.as_bytes()
    );
    assert_eq!(config.apps()[1].api_key(), "key-two");
    assert_eq!(
        config.apps()[1].api_secret().expose(),
        b"literal ${NOT_A_VAR}",
        "$${{ writes a literal ${{"
    );

    assert_eq!(config.routes().len(), 2);
    let crm = &config.routes()[0];
    assert_eq!(crm.name, "crm");
    assert!(crm.enabled);
    assert_eq!(crm.filter.describe(), "message.new, moderation.*");
    assert!(crm.filter.matches(Some("moderation.flagged")));
    assert!(!crm.filter.matches(Some("message.updated")));
    assert_eq!(crm.destination.kind().key(), "http");
    assert_eq!(crm.destination.concurrency(), 16);
    let Destination::Http(http) = &crm.destination else {
        panic!("crm is not an http route: {crm:?}");
    };
    assert_eq!(http.url.as_str(), "https://crm.example.com/hooks?x=1");
    assert_eq!(http.timeout, Duration::from_millis(2500));
    assert_eq!(http.concurrency, 16);
    assert_eq!(
        http.retry,
        RetryPolicy::try_new(
            Duration::from_secs(2 * 3600),
            Duration::from_millis(500),
            Duration::from_secs(60),
        )
        .unwrap()
    );
    assert_eq!(
        http.api_secret.as_ref().map(|s| s.expose()),
        Some(CRM_SECRET.as_bytes()),
        "deliveries are re-signed with the route's own secret"
    );
    assert!(http.forward_path);
    assert_eq!(crm.paths.describe(), "/stream, /pending/*");
    assert!(crm.paths.matches("/pending/PassOnPendingMessage"));
    assert!(!crm.paths.matches("/"));

    assert_eq!(config.passthrough().len(), 2);
    let bms = &config.passthrough()[0];
    assert_eq!(bms.path, "/stream/before-message-send");
    assert_eq!(bms.url.as_str(), "http://127.0.0.1:3000/bms?app=1");
    assert_eq!(bms.timeout, Some(Duration::from_millis(1200)));
    assert_eq!(bms.concurrency, 32);
    let commands = &config.passthrough()[1];
    assert_eq!(
        (commands.timeout, commands.concurrency),
        (None, config::DEFAULT_PASSTHROUGH_CONCURRENCY),
        "by default: Stream's deadline for the hook, 64 in flight"
    );
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());

    let audit = &config.routes()[1];
    assert_eq!(audit.name, "audit.log_v2");
    assert!(!audit.enabled);
    assert!(audit.paths.takes_every_path(), "no paths: every path");
    assert!(audit.filter.matches(Some("channel.deleted")));
    assert!(!audit.filter.matches(Some("channel.created")));
    assert_eq!(audit.destination.kind().key(), "file");
    assert_eq!(audit.destination.target(), "/var/log/hookfan/audit.jsonl");
    assert_eq!(audit.destination.concurrency(), 1);
    assert_eq!(
        *audit.destination.retry(),
        RetryPolicy::try_new(
            Duration::from_secs(7 * 24 * 3600),
            Duration::from_secs(2),
            Duration::from_secs(2),
        )
        .unwrap()
    );
}

#[test]
fn the_listener_defaults_are_plain_http_from_anywhere_with_no_age_limit() {
    let text = margin(
        r#"
        |apps:
        |  - api_key: k
        |    api_secret: s
        |routes:
        |  - name: a
        |    event_types: []
        |    file: { path: ./a.jsonl }
        "#,
    );
    let config = config::from_str("routes.yaml", &text, |_| None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.tls(), None);
    assert_eq!(config.allowed_ips(), None);
    assert_eq!(config.max_event_age(), None);
    assert_eq!(config.max_connections(), config::DEFAULT_MAX_CONNECTIONS);
    assert_eq!(config.request_timeout(), config::DEFAULT_REQUEST_TIMEOUT);
    assert_eq!(
        config.max_buffered_bytes() as u64,
        config::DEFAULT_MAX_BUFFERED_BYTES
    );
}

#[test]
fn an_event_type_stream_does_not_document_is_a_warning_with_the_closest_real_types() {
    let text = margin(
        r#"
        |apps:
        |  - api_key: k
        |    api_secret: s
        |routes:
        |  - name: feeds
        |    event_types: [ActivityAddedEvent, "feeds.*", mesage.new, my.custom.event]
        |    file: { path: ./a.jsonl }
        "#,
    );
    let config = config::from_str("routes.yaml", &text, |_| None).unwrap_or_else(|e| panic!("{e}"));
    let warnings = config.render_warnings("routes.yaml");
    assert_eq!(
        warnings.len(),
        3,
        "globs are never warned about: {warnings:#?}"
    );
    assert!(
        warnings[0].starts_with("routes.yaml:6:19: warning: route \"feeds\": \"ActivityAddedEvent\" is not an event type Stream documents")
            && warnings[0].contains("did you mean feeds.activity.added"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].starts_with("routes.yaml:6:50:")
            && warnings[1].contains("did you mean message.new"),
        "{}",
        warnings[1]
    );
    assert!(
        warnings[2].contains("\"my.custom.event\""),
        "{}",
        warnings[2]
    );
    // A warning never changes what the route takes: the entry still matches exactly.
    assert!(config.routes()[0].filter.matches(Some("my.custom.event")));
}

#[test]
fn debug_output_of_a_config_shows_neither_app_secrets_nor_route_secrets() {
    let config = every_key_config();
    for shown in [format!("{config:?}"), format!("{config:#?}")] {
        assert!(!shown.contains(APP_SECRET), "app secret leaked: {shown}");
        assert!(!shown.contains(CRM_SECRET), "route secret leaked: {shown}");
        assert!(shown.contains("Secret(***)"), "{shown}");
    }
}

// ---- Routes by content: `match:` and `not:` ---------------------------------------------------

broken_configs! {
    conditions_on_the_body_are_checked_each_where_it_stands {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: a
            |    event_types: ["message.*"]
            |    match:
            |      channel..type: livestream
            |      channel.member_count: { gte: many }
            |      message.user.role: { like: admin }
            |      channel_type: []
            |      members: [alice, [bob]]
            |    not:
            |      user.banned: { exists: false, gt: 1 }
            |    file: { path: ./a.jsonl }
            |  - name: b
            |    event_types: []
            |    not: {}
            |    file: { path: ./b.jsonl }
        "#,
        expect: [
            (6, 7, r#"route "a": match: "channel..type" is not a field path: an empty key"#),
            (7, 36, r#"route "a": match: channel.member_count: gte compares numbers, and "many" is a string"#),
            (8, 28, r#"route "a": match: message.user.role: unknown operator "like" (expected one of exists, eq, gte, gt, lte, lt)"#),
            (9, 21, r#"route "a": match: channel_type: an empty list matches nothing"#),
            (10, 24, r#"route "a": match: members: a list holds values to match (strings, numbers, booleans, null), not a list"#),
            (12, 20, r#"route "a": not: user.banned: exists: false cannot hold with a comparison"#),
            (16, 10, r#"route "b": not is empty"#),
        ],
    }

    a_match_with_nothing_under_it_is_empty_not_absent {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: a
            |    event_types: []
            |    match:
            |      # channel_type: livestream
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (5, 5, r#"route "a": match is empty"#),
        ],
    }

    rate_limits_are_events_per_second_minute_or_hour {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: a
            |    event_types: []
            |    http: { url: "http://h/", rate_limit: 50 }
            |  - name: b
            |    event_types: []
            |    file: { path: ./b.jsonl, rate_limit: 0/s }
            |  - name: c
            |    event_types: []
            |    sqs: { queue_url: "https://sqs.us-east-1.amazonaws.com/1/q", rate_limit: 10/d }
            |  - name: d
            |    event_types: []
            |    sns: { topic_arn: "arn:aws:sns:us-east-1:1:t", rate_limit: 5/m, burst: 0 }
            |  - name: e
            |    event_types: []
            |    http: { url: "http://h/", burst: 10 }
        "#,
        expect: [
            (5, 43, r#"route "a": rate_limit "50" is not a rate: write events per second, minute or hour, like 50/s, 300/m or 1000/h"#),
            (8, 42, r#"route "b": rate_limit "0/s" must allow 1 to 1000000 events per s"#),
            (11, 78, r#"route "c": rate_limit "10/d" is not a rate"#),
            (14, 76, r#"route "d": burst 0 must be 1 to 1000000 events"#),
            (17, 38, r#"route "e": burst without rate_limit paces nothing"#),
        ],
    }

    conditions_are_a_mapping {
        env: [],
        yaml: r#"
            |apps: [{ api_key: k, api_secret: s }]
            |routes:
            |  - name: a
            |    event_types: []
            |    match: [channel_type]
            |    file: { path: ./a.jsonl }
        "#,
        expect: [
            (5, 12, "a mapping of field paths to the values they must hold"),
        ],
    }
}

#[test]
fn malformed_conditions_have_their_kinds() {
    use Problem::*;
    let yaml =
        "|apps: [{ api_key: k, api_secret: s }]\n|routes:\n|  - name: a\n|    event_types: []\n\
                |    match: { a..b: 1, n: { between: 1 }, m: { gte: x } }\n\
                |    not: { u: { exists: false, lt: 2 } }\n|    file: { path: ./a }\n";
    assert_eq!(
        kinds_of(&[], yaml),
        [
            (5, InvalidValue, at("routes[0].match.a..b")),
            (5, UnknownKey, at("routes[0].match.n.between")),
            (5, InvalidValue, at("routes[0].match.m.gte")),
            (6, Conflict, at("routes[0].not.u")),
        ]
    );
}

#[test]
fn rate_limits_are_read_with_their_bursts() {
    let text = margin(
        r#"
        |apps: [{ api_key: k, api_secret: s }]
        |routes:
        |  - { name: a, event_types: [], http: { url: "http://h/", rate_limit: 50/s } }
        |  - { name: b, event_types: [], file: { path: ./b, rate_limit: 90/m } }
        |  - { name: c, event_types: [], sqs: { queue_url: "https://sqs.us-east-1.amazonaws.com/1/q", rate_limit: 7200/h, burst: 10 } }
        |  - { name: d, event_types: [], sns: { topic_arn: "arn:aws:sns:us-east-1:1:t" } }
        "#,
    );
    let config = config::from_str("routes.yaml", &text, lookup_in(&[])).unwrap();
    let limits: Vec<Option<(f64, u32, String)>> = config
        .routes()
        .iter()
        .map(|r| {
            r.destination
                .rate_limit()
                .map(|l| (l.per_second, l.burst, l.describe()))
        })
        .collect();
    assert_eq!(
        limits,
        [
            Some((50.0, 50, "50/s, burst 50".to_string())),
            Some((1.5, 2, "90/m, burst 2".to_string())),
            Some((2.0, 10, "7200/h, burst 10".to_string())),
            None,
        ]
    );
}

#[test]
fn conditions_are_read_in_the_order_written_and_select_by_the_body() {
    let text = margin(
        r#"
        |apps: [{ api_key: k, api_secret: s }]
        |routes:
        |  - name: livestream-moderation
        |    event_types: ["message.*"]
        |    match:
        |      channel_type: [livestream, gaming]
        |    not:
        |      message.user.id: "bot-*"
        |      user.role: admin
        |    file: { path: ./a.jsonl }
        |  - name: big-channels
        |    event_types: []
        |    match:
        |      channel.member_count: { gte: 1000 }
        |      message.attachments: { exists: true }
        |      'custom["team.name"]': core
        |    file: { path: ./b.jsonl }
        "#,
    );
    let config = config::from_str("routes.yaml", &text, lookup_in(&[])).unwrap();
    let conditions: Vec<String> = config.routes()[1]
        .content
        .conditions()
        .map(|(_, c)| format!("{}: {}", c.path, c.test))
        .collect();
    assert_eq!(
        conditions,
        [
            "channel.member_count: gte 1000",
            "message.attachments: to exist",
            "custom[\"team.name\"]: core"
        ]
    );
    let select = |body: &str| {
        let event_type = serde_json::from_str::<serde_json::Value>(body).unwrap()["type"]
            .as_str()
            .map(str::to_string);
        let candidate = hookfan::route::Candidate {
            event_type: event_type.as_deref(),
            path: "/",
            body: body.as_bytes(),
        };
        hookfan::route::select(config.routes(), config.needed(), &candidate)
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let live = r#"{"type":"message.new","channel_type":"livestream","message":{"user":{"id":"u1"},"attachments":[]},"user":{"role":"user"}}"#;
    assert_eq!(select(live), ["livestream-moderation"]);
    let bot = r#"{"type":"message.new","channel_type":"gaming","message":{"user":{"id":"bot-1"}}}"#;
    assert!(select(bot).is_empty());
    let big = r#"{"type":"message.new","channel_type":"messaging","channel":{"member_count":5000},"message":{"attachments":[{"type":"image"}]},"custom":{"team.name":"core"}}"#;
    assert_eq!(select(big), ["big-channels"]);
}
