//! Stage 3 of reading a config: values, with defaults, into the types the daemon runs on.
//! The top-level settings and `apps:` here, each other section in its own module
//! (`routes.rs`, `sources.rs`, `passthrough.rs`, `dedup.rs`), which [`validate`] calls.

use super::*;

pub(super) fn validate(raw: RawConfig, pos: &Positions) -> Result<Config, Vec<Diagnostic>> {
    let mut errs = Vec::new();
    let mut warnings = Vec::new();
    let e = &mut errs;

    let (listen, admin_listen) = addresses(&raw, pos, e);
    let listen = receivers(listen, &raw, pos, e);
    let max_event_age = raw.max_event_age.as_ref().map(|_| {
        let age = duration(&raw.max_event_age, "max_event_age", MIN_EVENT_AGE, pos, e);
        if age < MIN_EVENT_AGE {
            e.push(pos.invalid(
                "max_event_age",
                format!("max_event_age must be at least {} (Stream retries an event for up to 15 s, and clocks drift)", humantime::format_duration(MIN_EVENT_AGE)),
            ));
        }
        age
    });
    let sizes = sizes(&raw, pos, e);
    let delivery_nice = raw
        .delivery_nice
        .map_or(Ok(DEFAULT_DELIVERY_NICE), i32::try_from)
        .ok()
        .filter(|n| (0..=19).contains(n))
        .unwrap_or_else(|| {
            e.push(pos.invalid(
                "delivery_nice",
                "delivery_nice must be between 0 (the same priority as ingest) and 19",
            ));
            DEFAULT_DELIVERY_NICE
        });
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if !(1..=1_000_000).contains(&max_connections) {
        e.push(pos.invalid(
            "max_connections",
            "max_connections must be between 1 and 1000000",
        ));
    }
    let request_timeout = duration(
        &raw.request_timeout,
        "request_timeout",
        DEFAULT_REQUEST_TIMEOUT,
        pos,
        e,
    );
    if request_timeout.is_zero() {
        e.push(pos.invalid("request_timeout", "request_timeout must be greater than 0"));
    }
    let data_dir = PathBuf::from(raw.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR));
    if data_dir.as_os_str().is_empty() {
        e.push(pos.invalid("data_dir", "data_dir: must not be empty"));
    }

    let dedup_window = duration(
        &raw.dedup_window,
        "dedup_window",
        DEFAULT_DEDUP_WINDOW,
        pos,
        e,
    );
    let shutdown_grace = duration(
        &raw.shutdown_grace,
        "shutdown_grace",
        DEFAULT_SHUTDOWN_GRACE,
        pos,
        e,
    );

    let access = access(raw.admin_token, raw.tls, raw.allowed_ips, pos, e);
    let apps = apps(raw.apps, pos, e);
    let routes = routes::validate(raw.routes, pos, e, &mut warnings);
    let passthrough = passthrough::validate(raw.passthrough, pos, e);
    let sources = sources::validate(raw.sources, pos, e);
    let dedup = dedup::validate(raw.dedup, pos, e);
    let tracing = traces::validate(raw.tracing, pos, e);

    if !errs.is_empty() {
        errs.sort_by_key(|d| (d.line, d.column));
        return Err(errs);
    }
    warnings.sort_by_key(|d| (d.line, d.column));
    Ok(Config {
        fixed: Fixed {
            listen,
            admin_listen,
            data_dir,
            spool_segment_bytes: sizes.spool_segment_bytes,
            max_connections,
            max_buffered_bytes: sizes.max_buffered_bytes as usize,
            delivery_nice,
            dedup,
            tracing,
        },
        reloadable: Reloadable {
            tls: access.tls,
            allowed_ips: access.allowed_ips,
            max_event_age,
            request_timeout,
            admin_token: access.admin_token,
            max_body_bytes: sizes.max_body_bytes as usize,
            dedup_window,
            shutdown_grace,
            apps,
            needed: crate::route::needs(&routes),
            routes,
            passthrough,
            sources,
            warnings,
        },
    })
}

/// `listen` and `admin_listen`: an IP:PORT each, or `off`.
fn addresses(
    raw: &RawConfig,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN).trim();
    let listen = if listen_text == "off" {
        None
    } else {
        Some(listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
            errs.push(pos.invalid(
                "listen",
                format!("listen: \"{listen_text}\" is not an IP:PORT address (for example 0.0.0.0:8080 or 127.0.0.1:8080), or off"),
            ));
            DEFAULT_LISTEN.parse().expect("default listen address parses")
        }))
    };

    let admin_text = raw
        .admin_listen
        .as_deref()
        .unwrap_or(DEFAULT_ADMIN_LISTEN)
        .trim();
    let admin_listen = if admin_text == "off" {
        None
    } else {
        match admin_text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                errs.push(pos.invalid(
                    "admin_listen",
                    format!("admin_listen: \"{admin_text}\" is not an IP:PORT address (for example 127.0.0.1:9090), or off"),
                ));
                None
            }
        }
    };
    (listen, admin_listen)
}

/// Where events come from: a webhook listener needs apps to verify what it receives, and
/// without one there must be sources; passthrough paths live on the webhook listener. Returns
/// `listen` as it runs (none on sources only, unless it was written).
fn receivers(
    mut listen: Option<SocketAddr>,
    raw: &RawConfig,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Option<SocketAddr> {
    let listen_written = raw.listen.as_deref().is_some_and(|l| l.trim() != "off");
    match (raw.apps.is_empty(), raw.sources.is_empty(), listen.is_some()) {
        // Sources only: nothing could be verified on a webhook port, so there is none.
        (true, false, _) if listen_written => errs.push(pos.conflict(
            "listen",
            "listen: a webhook listener needs apps: to verify what it receives; add apps:, or write listen: off to run on sources only",
        )),
        (true, false, _) => listen = None,
        (true, true, _) => errs.push(pos.missing(
            "apps",
            "no apps configured: add `apps: [{ api_key: ..., api_secret: ... }]` with your Stream app's key and secret, or every webhook is refused",
        )),
        (false, true, false) => errs.push(pos.conflict(
            "listen",
            "listen is off and there are no sources: hookfan would receive nothing (add a source under sources:, or give listen an address)",
        )),
        _ => {}
    }
    if listen.is_none() && !raw.passthrough.is_empty() {
        errs.push(pos.conflict(
            "passthrough",
            "passthrough: synchronous hooks arrive on the webhook listener, and there is none (listen: off, or no apps): Stream would send its messages unmoderated",
        ));
    }
    listen
}

/// Who may reach hookfan: `admin_token`, `tls`, `allowed_ips`.
struct Access {
    admin_token: Option<Secret>,
    tls: Option<TlsFiles>,
    allowed_ips: Option<Vec<ipnet::IpNet>>,
}

fn access(
    admin_token: Option<String>,
    tls: Option<RawTls>,
    allowed_ips: Option<Vec<String>>,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Access {
    let admin_token = match admin_token {
        Some(t) if t.trim().is_empty() => {
            errs.push(pos.invalid(
                "admin_token",
                "admin_token is empty (is its environment variable set?); remove it to leave the admin API open on its loopback address",
            ));
            None
        }
        other => other.map(Secret::new),
    };
    let tls = tls.map(|t| {
        for (key, value) in [("cert", &t.cert), ("key", &t.key)] {
            if value.trim().is_empty() {
                errs.push(pos.invalid(
                    &format!("tls.{key}"),
                    format!("tls.{key} is empty: give the path of a PEM file, or remove tls: to serve plain HTTP"),
                ));
            }
        }
        TlsFiles {
            cert: PathBuf::from(t.cert),
            key: PathBuf::from(t.key),
        }
    });
    let allowed_ips = allowed_ips.map(|list| {
        if list.is_empty() {
            errs.push(pos.invalid(
                "allowed_ips",
                "allowed_ips is empty, which would refuse every sender; remove it to accept webhooks from anywhere",
            ));
        }
        list.iter()
            .enumerate()
            .filter_map(|(i, text)| match parse_network(text) {
                Some(net) => Some(net),
                None => {
                    errs.push(pos.invalid(
                        &format!("allowed_ips[{i}]"),
                        format!("allowed_ips: \"{text}\" is not an IP address or CIDR network (like 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32)"),
                    ));
                    None
                }
            })
            .collect()
    });
    Access {
        admin_token,
        tls,
        allowed_ips,
    }
}

/// The byte limits, which bound each other: a body fits in half a spool segment and in the
/// buffer budget.
struct Sizes {
    max_body_bytes: u64,
    spool_segment_bytes: u64,
    max_buffered_bytes: u64,
}

fn sizes(raw: &RawConfig, pos: &Positions, errs: &mut Vec<Diagnostic>) -> Sizes {
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 || max_body_bytes > MAX_BODY_LIMIT {
        errs.push(pos.invalid(
            "max_body_bytes",
            format!("max_body_bytes: must be between 1 and {MAX_BODY_LIMIT}"),
        ));
    }

    let spool_segment_bytes = raw
        .spool_segment_bytes
        .unwrap_or(DEFAULT_SPOOL_SEGMENT_BYTES);
    if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&spool_segment_bytes) {
        errs.push(pos.invalid(
            "spool_segment_bytes",
            format!("spool_segment_bytes: must be between {MIN_SEGMENT_BYTES} (1 MiB) and {MAX_SEGMENT_BYTES} (1 GiB)"),
        ));
    } else if max_body_bytes <= MAX_BODY_LIMIT && spool_segment_bytes < 2 * max_body_bytes {
        let key = if raw.spool_segment_bytes.is_some() {
            "spool_segment_bytes"
        } else {
            "max_body_bytes"
        };
        errs.push(pos.conflict(
            key,
            format!("spool_segment_bytes ({spool_segment_bytes}) is less than twice max_body_bytes ({max_body_bytes}): a webhook of the largest size must fit in half a spool segment; raise spool_segment_bytes"),
        ));
    }

    let max_buffered_bytes = raw
        .max_buffered_bytes
        .unwrap_or(DEFAULT_MAX_BUFFERED_BYTES.max(2 * max_body_bytes));
    if max_buffered_bytes < max_body_bytes {
        errs.push(pos.conflict(
            "max_buffered_bytes",
            format!("max_buffered_bytes ({max_buffered_bytes}) is less than max_body_bytes ({max_body_bytes}): a webhook of the largest size could never be taken"),
        ));
    }
    Sizes {
        max_body_bytes,
        spool_segment_bytes,
        max_buffered_bytes,
    }
}

/// `apps:`: each Stream app's key and secret; a key is listed once.
fn apps(raw: Vec<RawApp>, pos: &Positions, errs: &mut Vec<Diagnostic>) -> Vec<App> {
    let mut apps = Vec::new();
    let mut keys = HashSet::new();
    for (i, app) in raw.into_iter().enumerate() {
        let at = format!("apps[{i}]");
        if app.api_key.trim().is_empty() {
            errs.push(pos.invalid(&format!("{at}.api_key"), "app: api_key is empty"));
        } else if !keys.insert(app.api_key.clone()) {
            errs.push(pos.not_unique(
                &format!("{at}.api_key"),
                format!("app: api_key \"{}\" is listed twice", app.api_key),
            ));
        }
        if app.api_secret.is_empty() {
            errs.push(pos.invalid(
                &format!("{at}.api_secret"),
                "app: api_secret is empty (is its environment variable set to an empty value?)",
            ));
        }
        apps.push(App::new(app.api_key, Secret::new(app.api_secret)));
    }

    apps
}

/// A route's or source's name: letters, digits, `-`, `_` and `.`, unique among its `kind`.
pub(super) fn check_name(
    name: &str,
    kind: &str,
    at: &str,
    names: &mut HashSet<String>,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) {
    let label = format!("{kind} \"{name}\"");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        errs.push(pos.invalid(
            &format!("{at}.name"),
            format!("{label}: a name is letters, digits, '-', '_' and '.' only"),
        ));
    } else if !names.insert(name.to_string()) {
        errs.push(pos.not_unique(
            &format!("{at}.name"),
            format!("{label}: the name is used by another {kind}; names must be unique"),
        ));
    }
}

/// An address (a network of one) or a CIDR network, normalised to its network address.
fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .ok()
}

pub(super) fn duration(
    text: &Option<String>,
    path: &str,
    default: Duration,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Duration {
    let Some(text) = text else { return default };
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d > MAX_DURATION => {
            let key = path.rsplit('.').next().unwrap_or(path);
            errs.push(pos.invalid(
                path,
                format!("{key}: \"{text}\" is longer than hookfan supports (at most 3650d)"),
            ));
            default
        }
        Ok(d) => d,
        Err(e) => {
            let key = path.rsplit('.').next().unwrap_or(path);
            errs.push(pos.invalid(
                path,
                format!("{key}: \"{text}\" is not a duration ({e}); write it like 500ms, 6s, 10m or 24h"),
            ));
            default
        }
    }
}
