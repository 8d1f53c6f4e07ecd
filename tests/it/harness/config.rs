//! The daemon's config: `TestConfig` and the routes.yaml it writes.

#[allow(unused_imports)]
use super::*;

/// An `http` route of the config file.
#[derive(Clone, Debug)]
pub struct HttpRoute {
    pub name: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub enabled: Option<bool>,
    pub timeout: String,
    pub concurrency: u32,
    pub api_secret: Option<String>,
    pub max_age: String,
    pub initial_backoff: String,
    pub max_backoff: String,
    /// `paths:` (None: the key is left out, every path).
    pub paths: Option<Vec<String>>,
    pub forward_path: bool,
    /// `match:` and `not:` as JSON objects (written as YAML flow mappings).
    pub conditions: Conditions,
    /// `rate_limit:` and `burst:`.
    pub rate_limit: Option<(String, Option<u64>)>,
}

/// A route's `match:` and `not:` blocks, when it has them.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    pub all: Option<serde_json::Value>,
    pub none: Option<serde_json::Value>,
}

impl Conditions {
    fn render(&self, y: &mut String) {
        for (key, block) in [("match", &self.all), ("not", &self.none)] {
            if let Some(block) = block {
                writeln!(y, "    {key}: {block}").unwrap();
            }
        }
    }
}

impl HttpRoute {
    pub fn new(name: &str, url: impl Into<String>) -> Self {
        HttpRoute {
            name: name.to_owned(),
            url: url.into(),
            event_types: Vec::new(),
            enabled: None,
            timeout: "2s".to_owned(),
            concurrency: 4,
            api_secret: None,
            max_age: "1h".to_owned(),
            initial_backoff: "10ms".to_owned(),
            max_backoff: "100ms".to_owned(),
            paths: None,
            forward_path: false,
            conditions: Conditions::default(),
            rate_limit: None,
        }
    }

    /// `rate_limit: rate` (like `100/s`), with `burst` when given.
    pub fn rate_limit(mut self, rate: &str, burst: Option<u64>) -> Self {
        self.rate_limit = Some((rate.to_owned(), burst));
        self
    }

    /// `concurrency:` (default 4).
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    /// `match:` (a JSON object of field paths to what they must hold).
    pub fn matching(mut self, block: serde_json::Value) -> Self {
        self.conditions.all = Some(block);
        self
    }

    /// `not:` (a JSON object, as `matching`).
    pub fn excluding(mut self, block: serde_json::Value) -> Self {
        self.conditions.none = Some(block);
        self
    }

    pub fn paths(mut self, paths: &[&str]) -> Self {
        self.paths = Some(paths.iter().map(|p| (*p).to_owned()).collect());
        self
    }

    /// `forward_path: true`: the request's path and query are appended to `url`.
    pub fn forward_path(mut self) -> Self {
        self.forward_path = true;
        self
    }

    pub fn event_types(mut self, types: &[&str]) -> Self {
        self.event_types = types.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = Some(enabled);
        self
    }

    pub fn api_secret(mut self, secret: &str) -> Self {
        self.api_secret = Some(secret.to_owned());
        self
    }

    pub fn timeout(mut self, timeout: &str) -> Self {
        self.timeout = timeout.to_owned();
        self
    }
}

/// Which AWS destination an [`AwsRoute`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AwsKind {
    Sqs,
    Sns,
}

/// An `sqs` or `sns` route of the config file.
#[derive(Clone, Debug)]
pub struct AwsRoute {
    pub kind: AwsKind,
    pub name: String,
    pub event_types: Vec<String>,
    /// `queue_url` (sqs) or `topic_arn` (sns).
    pub target: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub message_group_id: Option<String>,
    /// `raw` or `stream_compressed`; `None` leaves the key out.
    pub body: Option<String>,
    pub concurrency: Option<u32>,
    pub max_age: String,
    pub initial_backoff: String,
    pub max_backoff: String,
    pub conditions: Conditions,
}

impl AwsRoute {
    fn new(kind: AwsKind, name: &str, target: impl Into<String>) -> Self {
        AwsRoute {
            kind,
            name: name.to_owned(),
            event_types: Vec::new(),
            target: target.into(),
            region: None,
            endpoint_url: None,
            message_group_id: None,
            body: None,
            concurrency: None,
            max_age: "1h".to_owned(),
            initial_backoff: "20ms".to_owned(),
            max_backoff: "200ms".to_owned(),
            conditions: Conditions::default(),
        }
    }

    /// `match:` (a JSON object of field paths to what they must hold).
    pub fn matching(mut self, block: serde_json::Value) -> Self {
        self.conditions.all = Some(block);
        self
    }

    /// `not:` (a JSON object, as `matching`).
    pub fn excluding(mut self, block: serde_json::Value) -> Self {
        self.conditions.none = Some(block);
        self
    }

    /// An `sqs` route to `queue_url`.
    pub fn sqs(name: &str, queue_url: impl Into<String>) -> Self {
        AwsRoute::new(AwsKind::Sqs, name, queue_url)
    }

    /// An `sns` route to `topic_arn`.
    pub fn sns(name: &str, topic_arn: impl Into<String>) -> Self {
        AwsRoute::new(AwsKind::Sns, name, topic_arn)
    }

    pub fn event_types(mut self, types: &[&str]) -> Self {
        self.event_types = types.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    pub fn region(mut self, region: &str) -> Self {
        self.region = Some(region.to_owned());
        self
    }

    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    pub fn message_group_id(mut self, template: &str) -> Self {
        self.message_group_id = Some(template.to_owned());
        self
    }

    pub fn body(mut self, format: &str) -> Self {
        self.body = Some(format.to_owned());
        self
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
        self
    }

    pub fn backoff(mut self, initial: &str, max: &str) -> Self {
        self.initial_backoff = initial.to_owned();
        self.max_backoff = max.to_owned();
        self
    }
}

/// A route of the config file.
#[derive(Clone, Debug)]
pub enum Route {
    Http(HttpRoute),
    Aws(AwsRoute),
    /// A `file` route; `file_name` is relative to the daemon's temp dir.
    File {
        name: String,
        event_types: Vec<String>,
        file_name: String,
    },
}

impl From<HttpRoute> for Route {
    fn from(r: HttpRoute) -> Self {
        Route::Http(r)
    }
}

impl From<AwsRoute> for Route {
    fn from(r: AwsRoute) -> Self {
        Route::Aws(r)
    }
}

/// The daemon's config file, rendered to YAML inside the daemon's temp dir.
#[derive(Clone, Debug)]
pub struct Config {
    pub apps: Vec<(String, String)>,
    pub max_body_bytes: u64,
    pub dedup_window: String,
    pub shutdown_grace: String,
    pub routes: Vec<Route>,
    /// Extra environment variables of the daemon process (every start).
    pub env: Vec<(String, String)>,
    /// `admin_token`, when the test wants the admin API locked.
    pub admin_token: Option<String>,
    /// Raw top-level YAML lines (`tls:`, `allowed_ips:`, ...), written before `apps:`.
    pub top_level: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            apps: vec![
                (API_KEY.to_owned(), SECRET.to_owned()),
                (OTHER_KEY.to_owned(), OTHER_SECRET.to_owned()),
            ],
            max_body_bytes: 1_048_576,
            dedup_window: "10m".to_owned(),
            shutdown_grace: "10s".to_owned(),
            admin_token: None,
            top_level: Vec::new(),
            routes: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl Config {
    /// Only the `test_key` app.
    pub fn single_app(mut self) -> Self {
        self.apps.truncate(1);
        self
    }

    pub fn max_body_bytes(mut self, n: u64) -> Self {
        self.max_body_bytes = n;
        self
    }

    pub fn route(mut self, route: impl Into<Route>) -> Self {
        self.routes.push(route.into());
        self
    }

    /// Adds a raw top-level YAML line, such as `max_event_age: 1h`.
    pub fn top_level(mut self, yaml: impl Into<String>) -> Self {
        self.top_level.push(yaml.into());
        self
    }

    /// Sets `key=value` in the daemon's environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn file_route(mut self, name: &str, file_name: &str) -> Self {
        self.routes.push(Route::File {
            name: name.to_owned(),
            event_types: Vec::new(),
            file_name: file_name.to_owned(),
        });
        self
    }

    /// The YAML text; `dir` is the daemon's temp dir.
    pub fn render(&self, dir: &Path) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("quote string");
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| q(s)).collect();
            format!("[{}]", items.join(", "))
        };
        let mut y = String::new();
        let data_dir = dir.join("data");
        if self.apps.is_empty() {
            // A webhook listener needs apps; without, the config runs on sources only.
            writeln!(y, "listen: off").unwrap();
        } else {
            writeln!(y, "listen: \"127.0.0.1:0\"").unwrap();
        }
        writeln!(y, "admin_listen: \"127.0.0.1:0\"").unwrap();
        if let Some(token) = &self.admin_token {
            writeln!(y, "admin_token: {}", q(token)).unwrap();
        }
        writeln!(y, "data_dir: {}", q(&data_dir.to_string_lossy())).unwrap();
        writeln!(y, "max_body_bytes: {}", self.max_body_bytes).unwrap();
        writeln!(y, "dedup_window: {}", q(&self.dedup_window)).unwrap();
        writeln!(y, "shutdown_grace: {}", q(&self.shutdown_grace)).unwrap();
        for line in &self.top_level {
            writeln!(y, "{line}").unwrap();
        }
        writeln!(y, "apps:").unwrap();
        for (key, secret) in &self.apps {
            writeln!(y, "  - api_key: {}", q(key)).unwrap();
            writeln!(y, "    api_secret: {}", q(secret)).unwrap();
        }
        if self.routes.is_empty() {
            writeln!(y, "routes: []").unwrap();
        } else {
            writeln!(y, "routes:").unwrap();
        }
        for route in &self.routes {
            match route {
                Route::Http(r) => {
                    writeln!(y, "  - name: {}", q(&r.name)).unwrap();
                    writeln!(y, "    event_types: {}", list(&r.event_types)).unwrap();
                    if let Some(enabled) = r.enabled {
                        writeln!(y, "    enabled: {enabled}").unwrap();
                    }
                    if let Some(paths) = &r.paths {
                        writeln!(y, "    paths: {}", list(paths)).unwrap();
                    }
                    r.conditions.render(&mut y);
                    writeln!(y, "    http:").unwrap();
                    if r.forward_path {
                        writeln!(y, "      forward_path: true").unwrap();
                    }
                    writeln!(y, "      url: {}", q(&r.url)).unwrap();
                    writeln!(y, "      timeout: {}", q(&r.timeout)).unwrap();
                    writeln!(y, "      concurrency: {}", r.concurrency).unwrap();
                    if let Some(secret) = &r.api_secret {
                        writeln!(y, "      api_secret: {}", q(secret)).unwrap();
                    }
                    if let Some((rate, burst)) = &r.rate_limit {
                        writeln!(y, "      rate_limit: {}", q(rate)).unwrap();
                        if let Some(burst) = burst {
                            writeln!(y, "      burst: {burst}").unwrap();
                        }
                    }
                    writeln!(
                        y,
                        "      retry: {{ max_age: {}, initial_backoff: {}, max_backoff: {} }}",
                        q(&r.max_age),
                        q(&r.initial_backoff),
                        q(&r.max_backoff)
                    )
                    .unwrap();
                }
                Route::Aws(r) => {
                    let (kind, target_key) = match r.kind {
                        AwsKind::Sqs => ("sqs", "queue_url"),
                        AwsKind::Sns => ("sns", "topic_arn"),
                    };
                    writeln!(y, "  - name: {}", q(&r.name)).unwrap();
                    writeln!(y, "    event_types: {}", list(&r.event_types)).unwrap();
                    r.conditions.render(&mut y);
                    writeln!(y, "    {kind}:").unwrap();
                    writeln!(y, "      {target_key}: {}", q(&r.target)).unwrap();
                    let optional = [
                        ("region", &r.region),
                        ("endpoint_url", &r.endpoint_url),
                        ("message_group_id", &r.message_group_id),
                        ("body", &r.body),
                    ];
                    for (key, value) in optional {
                        if let Some(value) = value {
                            writeln!(y, "      {key}: {}", q(value)).unwrap();
                        }
                    }
                    if let Some(n) = r.concurrency {
                        writeln!(y, "      concurrency: {n}").unwrap();
                    }
                    writeln!(
                        y,
                        "      retry: {{ max_age: {}, initial_backoff: {}, max_backoff: {} }}",
                        q(&r.max_age),
                        q(&r.initial_backoff),
                        q(&r.max_backoff)
                    )
                    .unwrap();
                }
                Route::File {
                    name,
                    event_types,
                    file_name,
                } => {
                    writeln!(y, "  - name: {}", q(name)).unwrap();
                    writeln!(y, "    event_types: {}", list(event_types)).unwrap();
                    let path = dir.join(file_name);
                    writeln!(y, "    file: {{ path: {} }}", q(&path.to_string_lossy())).unwrap();
                }
            }
        }
        y
    }
}
