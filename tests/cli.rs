//! The config-ergonomics commands, from outside: `hookfan schema` and what it accepts
//! compared with `hookfan check`, `hookfan init`, `hookfan check --no-env`, shell
//! completions and the man page; and the README's copies of the example consumers.
//!
//! The schema is checked against the file *as written* (before `${VAR}` substitution, as an
//! editor sees it); `check` against the same text with its variables set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hookfan::config::{self, placeholder, Placeholders};
use serde_json::{json, Value};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// `hookfan ARGS` with no Stream or hookfan variables from the developer's shell.
fn hookfan(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookfan"));
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("STREAM_") || k.starts_with("HOOKFAN_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run hookfan")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&config::schema::json()).expect("the schema compiles")
}

/// The schema's errors for a YAML text as written (empty: accepted).
fn schema_errors(validator: &jsonschema::Validator, yaml: &str) -> Vec<String> {
    let value: Value = match serde_yaml::from_str(yaml) {
        Ok(v) => v,
        Err(e) => return vec![format!("not YAML: {e}")],
    };
    validator
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// `check`'s verdict with every `${VAR}` set to `value_of(name)`.
fn check_result(yaml: &str, vars: &[(&str, &str)]) -> Result<(), String> {
    config::from_str("routes.yaml", yaml, |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
    .map(|_| ())
    .map_err(|e| e.to_string())
}

const APPS: &str = "apps:\n  - api_key: k\n    api_secret: s\n";

// ---------------------------------------------------------------------------------------------
// Every example config in the repository

/// The ```yaml blocks of README.md's "routes.yaml reference" and "Destinations" sections,
/// each made a whole config: a block of route entries gets an `apps:` and `routes:` around it.
fn readme_configs() -> Vec<(String, String)> {
    let readme = read("README.md");
    let mut out = Vec::new();
    let mut section = String::new();
    let mut lines = readme.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if let Some(title) = line.strip_prefix("## ").or(line.strip_prefix("### ")) {
            section = title.to_string();
        }
        if line.trim() != "```yaml"
            || !(section == "routes.yaml reference" || section == "Destinations")
        {
            continue;
        }
        let block: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| l.trim() != "```")
            .collect();
        let text = block.join("\n") + "\n";
        let text = if text.trim_start().starts_with("- name:") {
            format!("{APPS}routes:\n{text}")
        } else {
            text
        };
        out.push((format!("README.md line {} ({section})", n + 1), text));
    }
    out
}

/// `EVERY_KEY` of tests/config.rs (the config using every key), without its `|` margin.
fn every_key_config_of_the_config_tests() -> String {
    let source = read("tests/config.rs");
    let start = source
        .find("const EVERY_KEY: &str = r#\"")
        .expect("tests/config.rs has EVERY_KEY");
    let body = &source[start..];
    let body = &body[body.find('\n').unwrap() + 1..body.find("\"#;").unwrap()];
    let text: String = body
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        text.contains("delivery_nice:") && text.contains("retry:"),
        "{text}"
    );
    text
}

/// The `routes.yaml` of every Kubernetes ConfigMap in a (multi-document) YAML text.
fn configmap_routes(text: &str) -> Vec<String> {
    use serde::Deserialize as _;
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|doc| Value::deserialize(doc).ok())
        .filter(|doc| doc["kind"] == "ConfigMap")
        .filter_map(|doc| doc["data"]["routes.yaml"].as_str().map(str::to_owned))
        .collect()
}

/// routes.yaml, every routes*.yaml under deploy/ and every routes.yaml held by a ConfigMap
/// there, and the README's configs.
fn example_configs() -> Vec<(String, String)> {
    let mut configs = vec![("routes.yaml".to_string(), read("routes.yaml"))];
    let mut stack = vec![repo().join("deploy")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read a deploy file");
            if name.starts_with("routes") {
                configs.push((path.display().to_string(), text));
            } else {
                for (i, routes) in configmap_routes(&text).into_iter().enumerate() {
                    configs.push((format!("{} (ConfigMap #{i})", path.display()), routes));
                }
            }
        }
    }
    configs.push((
        "tests/config.rs EVERY_KEY".to_string(),
        every_key_config_of_the_config_tests(),
    ));
    let readme = readme_configs();
    assert!(
        readme.len() >= 2,
        "expected the reference and Destinations YAML blocks in README.md, found {}",
        readme.len()
    );
    configs.extend(readme);
    configs
}

#[test]
fn every_example_config_in_the_repository_passes_the_schema_and_check() {
    let validator = validator();
    for (name, text) in example_configs() {
        let errors = schema_errors(&validator, &text);
        assert!(
            errors.is_empty(),
            "{name}: the schema refuses it: {errors:#?}\n{text}"
        );
        // Variables hold secrets and addresses in these files: placeholders stand for them.
        placeholder::from_str(&name, &text, |_| None, Placeholders::All)
            .unwrap_or_else(|e| panic!("{name}: check refuses it:\n{e}"));
    }
}

#[test]
fn a_routes_yaml_inside_a_kubernetes_configmap_is_found() {
    let manifests = "apiVersion: v1\nkind: Service\nmetadata: { name: s }\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: hookfan }\ndata:\n  routes.yaml: |\n    apps: []\n";
    assert_eq!(configmap_routes(manifests), ["apps: []\n"]);
}

#[test]
fn the_shipped_routes_yaml_points_editors_at_the_schema_the_repository_ships() {
    let first = read("routes.yaml")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        first,
        format!(
            "# yaml-language-server: $schema={}",
            config::schema::FILE_NAME
        )
    );
    let out = hookfan(&["schema"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        read(config::schema::FILE_NAME),
        "hookfan.schema.json is stale: run `cargo run -- schema > hookfan.schema.json`"
    );
    let printed: Value = serde_json::from_str(&stdout(&out)).expect("schema prints JSON");
    assert_eq!(
        printed["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

// ---------------------------------------------------------------------------------------------
// The schema against check, case by case

/// What the schema and check each say about one config.
struct Case {
    name: &'static str,
    yaml: &'static str,
    vars: &'static [(&'static str, &'static str)],
    schema_accepts: bool,
    check_accepts: bool,
}

/// Configs where the two agree, both ways, then the cases the schema cannot express (it
/// accepts, check refuses: values that must parse, relations between keys, uniqueness).
/// No row has the schema refuse what check accepts: an editor never flags a valid config.
const CASES: &[Case] = &[
    Case {
        name: "a minimal config",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: true,
    },
    Case {
        name: "${VAR} in a boolean, a number, a duration and an enum",
        // Unquoted only in block style: in a flow mapping, YAML reads the braces of ${ON}.
        yaml: "max_body_bytes: ${MAX}\ndedup_window: ${WINDOW:-10m}\napps: [{ api_key: k, api_secret: \"${SECRET}\" }]\nroutes:\n  - name: a\n    enabled: ${ON}\n    event_types: []\n    sqs: { queue_url: \"${Q}\", body: \"${BODY}\" }\n",
        vars: &[("MAX", "1000"), ("SECRET", "s"), ("ON", "false"), ("Q", "https://sqs.us-east-1.amazonaws.com/1/q"), ("BODY", "raw")],
        schema_accepts: true,
        check_accepts: true,
    },
    Case {
        name: "durations in every unit humantime reads",
        yaml: "dedup_window: 1h 30m\nshutdown_grace: 500ms\nrequest_timeout: 2 seconds\napps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl, retry: { max_age: 7days, initial_backoff: 1s, max_backoff: 5min } } }]\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: true,
    },
    Case {
        name: "an unknown top-level key",
        yaml: "colour: red\napps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "an unknown key in a destination",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], http: { url: \"http://h/\", timeuot: 5s } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "a route without a destination",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [] }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "a route with two destinations",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl }, http: { url: \"http://h/\" } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "a destination key with nothing under it",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes:\n  - name: a\n    event_types: []\n    http:\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "an empty event type",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [\"\"], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "event types as names and globs",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [message.new, \"moderation.*\", \"*.deleted\"], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: true,
    },
    Case {
        name: "a route without event_types",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "no apps",
        yaml: "routes: [{ name: a, event_types: [], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "an empty route list",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: []\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "a number of the wrong type",
        yaml: "max_connections: many\napps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "a concurrency out of range",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], http: { url: \"http://h/\", concurrency: 0 } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "a delivery_nice out of range",
        yaml: "delivery_nice: 20\napps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "an unknown body format",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], sqs: { queue_url: \"https://sqs.us-east-1.amazonaws.com/1/q\", body: gzip } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "a duration that is not one",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], http: { url: \"http://h/\", timeout: six seconds } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "an sqs destination with sns's topic_arn",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], sqs: { topic_arn: \"arn:aws:sns:us-east-1:1:t\" } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "an sns destination without topic_arn",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], sns: { region: us-east-1 } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "a route name with a space",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: my route, event_types: [], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "tls without its key",
        yaml: "tls: { cert: c.pem }\napps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    // ---- Beyond the schema: check alone refuses these.
    Case {
        name: "beyond the schema: an address that does not parse",
        yaml: "listen: localhost\napps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: false,
    },
    Case {
        name: "match and not: values, lists, exists and comparisons",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes:\n  - name: a\n    event_types: []\n    match: { channel_type: [livestream, gaming], n: { gte: 1, lt: 5 }, a: { exists: true }, f: false, z: null }\n    not: { message.user.id: \"bot-*\" }\n    file: { path: a.jsonl }\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: true,
    },
    Case {
        name: "match: an unknown operator",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], match: { n: { between: 1 } }, file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "match: a comparison with a string",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], match: { n: { gte: big } }, file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: false,
        check_accepts: false,
    },
    Case {
        name: "beyond the schema: a field path with an empty key",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], match: { a..b: 1 }, file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: false,
    },
    Case {
        name: "beyond the schema: a URL of another scheme",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], http: { url: \"ftp://h/\" } }]\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: false,
    },
    Case {
        name: "beyond the schema: an address that is not a CIDR",
        yaml: "allowed_ips: [10.0.0.0/33]\napps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: false,
    },
    Case {
        name: "beyond the schema: initial_backoff above max_backoff",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl, retry: { initial_backoff: 10m, max_backoff: 1m } } }]\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: false,
    },
    Case {
        name: "beyond the schema: max_buffered_bytes below max_body_bytes",
        yaml: "max_body_bytes: 2000\nmax_buffered_bytes: 1000\napps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: false,
    },
    Case {
        name: "beyond the schema: two routes of one name",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes:\n  - { name: a, event_types: [], file: { path: a.jsonl } }\n  - { name: a, event_types: [], file: { path: b.jsonl } }\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: false,
    },
    Case {
        name: "beyond the schema: a FIFO queue without message_group_id",
        yaml: "apps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], sqs: { queue_url: \"https://sqs.us-east-1.amazonaws.com/1/q.fifo\" } }]\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: false,
    },
    Case {
        name: "beyond the schema: a max_event_age below Stream's retries",
        yaml: "max_event_age: 15s\napps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: false,
    },
    Case {
        name: "beyond the schema: a variable that is not set",
        yaml: "apps: [{ api_key: k, api_secret: \"${UNSET_SECRET}\" }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl } }]\n",
        vars: &[],
        schema_accepts: true,
        check_accepts: false,
    },
    Case {
        name: "beyond the schema: a ${VAR} whose value has the wrong type",
        yaml: "max_body_bytes: ${MAX}\napps: [{ api_key: k, api_secret: s }]\nroutes: [{ name: a, event_types: [], file: { path: a.jsonl } }]\n",
        vars: &[("MAX", "lots")],
        schema_accepts: true,
        check_accepts: false,
    },
];

#[test]
fn the_schema_and_check_agree_except_where_the_schema_cannot_look() {
    let validator = validator();
    let mut wrong = Vec::new();
    for case in CASES {
        let schema = schema_errors(&validator, case.yaml);
        let check = check_result(case.yaml, case.vars);
        if schema.is_empty() != case.schema_accepts || check.is_ok() != case.check_accepts {
            wrong.push(format!(
                "{}: expected schema {} / check {}, got schema {schema:?} / check {check:?}",
                case.name,
                verdict(case.schema_accepts),
                verdict(case.check_accepts),
            ));
        }
        assert!(
            case.schema_accepts || !case.check_accepts,
            "{}: a row where the schema refuses a valid config is a bug in the schema",
            case.name
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn verdict(accepts: bool) -> &'static str {
    if accepts {
        "accepts"
    } else {
        "refuses"
    }
}

/// Adds every property of `def` (a schema object) that has a default to `into`.
fn defaults_of(def: &Value, into: &mut serde_json::Map<String, Value>) {
    for (key, property) in def["properties"].as_object().expect("properties") {
        if let Some(default) = property.get("default") {
            into.insert(key.clone(), default.clone());
        }
    }
}

#[test]
fn the_defaults_the_schema_shows_are_the_defaults_check_applies() {
    let schema = config::schema::json();
    let defs = &schema["$defs"];
    let minimal = json!({
        "apps": [{ "api_key": "k", "api_secret": "s" }],
        "routes": [
            { "name": "h", "event_types": [], "http": { "url": "http://h/", "retry": {} } },
            { "name": "q", "event_types": [], "sqs": { "queue_url": "https://sqs.us-east-1.amazonaws.com/1/q" } },
        ],
    });
    let mut explicit = minimal.clone();
    let top = explicit.as_object_mut().unwrap();
    defaults_of(&schema, top);
    for (i, kind, def) in [(0, "http", "Http"), (1, "sqs", "Sqs")] {
        let route = explicit["routes"][i].as_object_mut().unwrap();
        defaults_of(&defs["Route"], route);
        defaults_of(&defs[def], route[kind].as_object_mut().unwrap());
    }
    defaults_of(
        &defs["Retry"],
        explicit["routes"][0]["http"]["retry"]
            .as_object_mut()
            .unwrap(),
    );
    assert!(
        explicit.to_string().len() > minimal.to_string().len() + 200,
        "the schema shows defaults: {explicit}"
    );
    // JSON is YAML: both go through the real parser.
    let parse = |v: &Value| {
        let c = config::from_str("routes.yaml", &v.to_string(), |_| None)
            .unwrap_or_else(|e| panic!("{e}\n{v}"));
        format!("{c:?}")
    };
    assert_eq!(parse(&explicit), parse(&minimal), "{explicit}");
}

// ---------------------------------------------------------------------------------------------
// init

#[test]
fn init_writes_a_starter_that_passes_check_and_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    let p = path.to_str().unwrap();
    let out = hookfan(&["init", "--config", p], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("hookfan schema > "),
        "{}",
        stdout(&out)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        read("routes.yaml"),
        "init writes the shipped routes.yaml"
    );
    assert!(
        text.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count()
            >= 5
    );
    assert!(schema_errors(&validator(), &text).is_empty());

    let credentials = [("STREAM_API_KEY", "key"), ("STREAM_API_SECRET", "secret")];
    let out = hookfan(&["check", "--config", p], &credentials);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(": OK"), "{}", stdout(&out));
}

#[test]
fn init_never_overwrites_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, "mine: true\n").unwrap();
    let out = hookfan(&["init", "--config", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already exists; hookfan init never overwrites a file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine: true\n");
}

// ---------------------------------------------------------------------------------------------
// check --no-env

#[test]
fn check_no_env_lints_the_shipped_config_without_any_of_its_variables() {
    let routes = repo().join("routes.yaml");
    let p = routes.to_str().unwrap();
    let without = hookfan(&["check", "--config", p], &[]);
    assert!(!without.status.success());
    assert!(stderr(&without).contains("STREAM_API_SECRET is not set"));

    let out = hookfan(&["check", "--no-env", "--config", p], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("OK without the environment (11 ${VAR} references taken as set)"),
        "{text}"
    );
    for route in [
        "everything-to-file",
        "moderation-handler",
        "all-events-to-sqs",
        "moderation-to-sns",
    ] {
        assert!(text.contains(route), "{text}");
    }
}

#[test]
fn check_no_env_still_reports_real_mistakes_at_their_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    std::fs::write(
        &path,
        "listen: ${LISTEN}\napps:\n  - api_key: ${KEY}\n    api_secret: ${SECRET}\nroutes:\n  - name: a\n    enabled: ${ON}\n    event_types: []\n    sqs: { queue_url: \"${QUEUE}\", concurrency: ${N}, bodyy: raw }\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let out = hookfan(&["check", "--no-env", "--config", p], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{p}:9:54: route \"a\": sqs: unknown key \"bodyy\""
        )),
        "{err}"
    );
    assert!(
        err.contains("1 error found"),
        "only the real mistake: {err}"
    );
}

// ---------------------------------------------------------------------------------------------
// check --json

#[test]
fn check_json_prints_every_error_with_its_position_path_and_code_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    std::fs::write(
        &path,
        "apps: [{ api_key: k, api_secret: ${SECRET} }]\nroutes:\n  - name: crm\n    event_types: []\n    htp: { url: http://crm/ }\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let out = hookfan(&["check", "--json", "--config", p], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let verdict: Value = serde_json::from_str(&stdout(&out)).expect("stdout is one JSON document");
    let message = |i: usize| {
        verdict["errors"][i]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(message(0).contains("SECRET is not set"), "{verdict:#}");
    assert!(
        message(1).contains("unknown destination key \"htp\""),
        "{verdict:#}"
    );
    assert_eq!(
        verdict,
        json!({
            "file": p,
            "valid": false,
            "errors": [
                { "line": 1, "column": 34, "path": null, "code": "environment", "message": message(0) },
                { "line": 5, "column": 5, "path": "routes[0].htp", "code": "unknown-key", "message": message(1) },
            ],
            "warnings": [],
        })
    );
    assert!(stderr(&out).contains("2 errors found"), "{}", stderr(&out));

    // --no-env takes the variable as set, and leaves the real mistake.
    let out = hookfan(&["check", "--json", "--no-env", "--config", p], &[]);
    assert_eq!(out.status.code(), Some(1));
    let verdict: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        verdict["errors"].as_array().map(Vec::len),
        Some(1),
        "{verdict:#}"
    );
    assert_eq!(verdict["errors"][0]["code"], "unknown-key");
}

#[test]
fn check_json_passes_a_valid_config_with_its_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    std::fs::write(
        &path,
        "apps: [{ api_key: k, api_secret: s }]\nroutes:\n  - name: a\n    event_types: [message.nwe]\n    file: { path: ./a.jsonl }\n",
    )
    .unwrap();
    let out = hookfan(
        &["check", "--json", "--config", path.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let verdict: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["errors"], json!([]));
    let warnings = verdict["warnings"].as_array().expect("a list");
    assert_eq!(warnings.len(), 1, "{verdict:#}");
    assert_eq!(warnings[0]["code"], "unknown-event-type");
    assert_eq!(warnings[0]["path"], "routes[0].event_types[0]");
    assert_eq!(warnings[0]["line"], 4);
}

#[test]
fn check_json_on_a_file_that_cannot_be_read_says_why_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let out = hookfan(
        &["check", "--json", "--config", missing.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// Completions and man page

const SUBCOMMANDS: [&str; 12] = [
    "serve",
    "check",
    "init",
    "schema",
    "send",
    "status",
    "drop-pending",
    "dead-letters",
    "spool",
    "completions",
    "man",
    "help",
];

#[test]
fn completions_are_generated_for_every_shell_and_know_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = hookfan(&["completions", shell], &[]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(script.contains("no-env"), "{shell}: check's flags too");
    }
}

#[test]
fn the_man_page_is_roff_and_lists_every_subcommand() {
    let out = hookfan(&["man"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH hookfan 1"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!("hookfan\\-{}(1)", sub.replace('-', "\\-"))),
            "the man page lacks {sub}"
        );
    }

    // Those references resolve: --dir writes a page per subcommand.
    let dir = tempfile::tempdir().unwrap();
    let out = hookfan(&["man", "--dir", dir.path().to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for sub in SUBCOMMANDS.iter().filter(|s| **s != "help") {
        let page = dir.path().join(format!("hookfan-{sub}.1"));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.contains(".TH hookfan-"), "{}", page.display());
    }
    assert!(dir.path().join("hookfan.1").is_file());
    assert!(dir.path().join("hookfan-dead-letters-replay.1").is_file());
}

// ---------------------------------------------------------------------------------------------
// The README's consumers are the example files

/// Each `<!-- include PATH -->` line of README.md and the fenced block right after it.
fn readme_includes() -> Vec<(PathBuf, String)> {
    let readme = read("README.md");
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(path) = line
            .trim()
            .strip_prefix("<!-- include ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "{path}: no code block after the include line"
        );
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        out.push((repo().join(path), block.join("\n") + "\n"));
    }
    out
}

#[test]
fn the_readme_shows_each_example_consumer_exactly_as_the_tested_file() {
    let includes = readme_includes();
    for wanted in [
        "examples/consumers/python/consumer.py",
        "examples/consumers/node/consumer.mjs",
        "examples/consumers/lambda/handler.py",
    ] {
        assert!(
            includes.iter().any(|(p, _)| p.ends_with(wanted)),
            "README.md has no `<!-- include {wanted} -->` block"
        );
    }
    for (path, block) in includes {
        let file = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert_eq!(
            block,
            file,
            "README.md's copy of {} differs from the file",
            path.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// spool verify

/// A log of ten events on route `r` in `<data_dir>/spool`, in 1 KiB segments (about four
/// events each), written through the library's writer as the daemon writes it.
fn small_log(data_dir: &Path) {
    use hookfan::spool::{recover, EventRecord, RealDisk, Record, Writer, WriterConfig};
    let storage = std::sync::Arc::new(RealDisk::open(&data_dir.join("spool")).unwrap());
    let config = WriterConfig {
        segment_size: 1024,
        prepared_ahead: 1,
        ..WriterConfig::default()
    };
    let w = Writer::start(storage.clone(), recover(&*storage).unwrap(), config).unwrap();
    w.wait(&w.submit(&[Record::Route { id: 0, name: "r" }]).unwrap())
        .unwrap();
    for i in 0..10 {
        let id = format!("id-{i}");
        let body = vec![b'x'; 200];
        let record = Record::Event(EventRecord {
            webhook_id: Some(&id),
            received_at_ms: 1,
            api_key: None,
            signature: "sig",
            event_type: None,
            path: None,
            trace: None,
            body: &body,
            routes: vec![hookfan::spool::record::RouteDue::new(0, 1)].into(),
        });
        w.wait(&w.submit(&[record]).unwrap()).unwrap();
    }
    w.close();
}

#[test]
fn spool_verify_passes_a_new_data_dir_and_a_clean_log_and_fails_a_damaged_one_naming_file_and_offset(
) {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec!["spool", "verify", "--data-dir", data_dir];
        args.extend_from_slice(extra);
        hookfan(&args, &[])
    };

    let out = verify(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("no log here yet"), "{}", stdout(&out));
    assert!(
        !data.path().join("spool").exists(),
        "verify creates nothing"
    );

    small_log(data.path());
    let out = verify(&[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("route r: 10 pending, 0 dead letters"),
        "{}",
        stdout(&out)
    );

    // A byte of segment 1's first group (the route's binding) flipped: groups after it
    // prove it was acknowledged.
    let first = data.path().join("spool/00000000000000000001.seg");
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[85] ^= 0x01;
    std::fs::write(&first, &bytes).unwrap();
    let out = verify(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("spool file 00000000000000000001.seg is corrupt at byte 40"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("hookfan spool repair"),
        "{}",
        stderr(&out)
    );
    let json: Value = serde_json::from_str(&stdout(&verify(&["--json"]))).unwrap();
    assert_eq!(json["verdict"]["kind"], "refused");
    assert_eq!(json["verdict"]["file"], "00000000000000000001.seg");
    assert_eq!(json["verdict"]["offset"], 40);
    assert_eq!(
        std::fs::read(&first).unwrap(),
        bytes,
        "verify changes nothing"
    );
}

#[test]
fn spool_repair_keeps_the_intact_records_of_a_damaged_log_and_says_what_it_lost() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let run = |cmd: &str| hookfan(&["spool", cmd, "--data-dir", data_dir], &[]);

    let out = run("repair");
    assert_eq!(out.status.code(), Some(1), "no log: nothing to repair");
    assert!(
        stderr(&out).contains("nothing to repair"),
        "{}",
        stderr(&out)
    );

    small_log(data.path());
    // A byte of the second group of segment 1 (the first event, id-0) flipped.
    let first = data.path().join("spool/00000000000000000001.seg");
    let mut bytes = std::fs::read(&first).unwrap();
    let at = bytes.len().min(1024);
    let second = (40..at - 4)
        .step_by(8)
        .filter(|&i| bytes[i..i + 4] == *b"HFGR")
        .nth(1)
        .expect("a second group");
    bytes[second + 100] ^= 0x01;
    std::fs::write(&first, &bytes).unwrap();
    assert_eq!(run("verify").status.code(), Some(1));

    let out = run("repair");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("00000000000000000001.seg at byte"), "{text}");
    assert!(text.contains("lsn 2: id-0"), "{text}");
    assert!(text.contains("route r: 9 pending"), "{text}");
    assert!(text.contains("report written to"), "{text}");
    let reports: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("spool-repair-") && n.ends_with(".txt"))
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let out = run("verify");
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("route r: 9 pending"),
        "{}",
        stdout(&out)
    );
}

/// A config for `explain`: routes by type, path, content, and one disabled.
const EXPLAIN_CONFIG: &str = r#"apps: [{ api_key: k, api_secret: "${STREAM_API_SECRET}" }]
routes:
  - name: livestream-moderation
    event_types: ["message.*"]
    match: { channel_type: [livestream, gaming] }
    not: { message.user.id: "bot-*" }
    file: { path: ./a.jsonl }
  - name: reactions
    event_types: ["reaction.*"]
    file: { path: ./b.jsonl }
  - name: pending
    event_types: []
    paths: ["/pending/*"]
    file: { path: ./c.jsonl }
  - name: archive
    event_types: []
    enabled: false
    file: { path: ./d.jsonl }
"#;

fn explain_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("routes.yaml"), EXPLAIN_CONFIG).unwrap();
    dir
}

#[test]
fn explain_says_which_routes_take_an_event_and_why_the_others_do_not() {
    let dir = explain_dir();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"type":"message.new","channel_type":"livestream","message":{"user":{"id":"u1"}},"future_field":{"x":1}}"#,
    )
    .unwrap();
    let config = dir.path().join("routes.yaml");
    // The secret is not needed: explain verifies nothing.
    let out = hookfan(
        &[
            "explain",
            "--config",
            config.to_str().unwrap(),
            event.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let verdicts: Vec<(String, String)> = text
        .lines()
        .skip_while(|l| !l.starts_with("ROUTE"))
        .skip(1)
        .map(|l| {
            let (route, verdict) = l.split_once(char::is_whitespace).unwrap();
            (route.to_string(), verdict.trim().to_string())
        })
        .collect();
    assert!(
        text.starts_with("event type message.new, posted to /\n"),
        "{text}"
    );
    assert_eq!(
        verdicts,
        [
            ("livestream-moderation", "takes"),
            (
                "reactions",
                "skips: event type \"message.new\" not in [reaction.*]"
            ),
            ("pending", "skips: path \"/\" not in [/pending/*]"),
            ("archive", "skips: disabled"),
        ]
        .map(|(r, v)| (r.to_string(), v.to_string()))
    );

    // From stdin, gzipped, as posted to another path, as JSON.
    let body =
        br#"{"type":"message.new","channel_type":"messaging","message":{"user":{"id":"bot-9"}}}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, body).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookfan"))
        .args([
            "explain",
            "--config",
            config.to_str().unwrap(),
            "--path",
            "/pending/x",
            "--json",
            "-",
        ])
        .env_remove("STREAM_API_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &gz.finish().unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json,
        json!({
            "event_type": "message.new",
            "path": "/pending/x",
            "routes": [
                {"route": "livestream-moderation", "takes": false,
                 "skip": "channel_type is \"messaging\", wanted one of livestream, gaming"},
                {"route": "reactions", "takes": false,
                 "skip": "event type \"message.new\" not in [reaction.*]"},
                {"route": "pending", "takes": true, "skip": null},
                {"route": "archive", "takes": false, "skip": "disabled"},
            ]
        })
    );

    // A bot on a livestream channel: excluded by not.
    std::fs::write(
        &event,
        r#"{"type":"message.new","channel_type":"livestream","message":{"user":{"id":"bot-9"}}}"#,
    )
    .unwrap();
    let out = hookfan(
        &[
            "explain",
            "--config",
            config.to_str().unwrap(),
            event.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        stdout(&out).contains(
            "livestream-moderation  skips: message.user.id is \"bot-9\", excluded by not: bot-*"
        ),
        "{}",
        stdout(&out)
    );
}

#[test]
fn explain_exits_2_on_an_event_or_config_it_cannot_read() {
    let dir = explain_dir();
    let config = dir.path().join("routes.yaml");
    let config = config.to_str().unwrap();
    let not_json = dir.path().join("bad.json");
    std::fs::write(&not_json, "type=message.new").unwrap();
    let array = dir.path().join("array.json");
    std::fs::write(&array, "[1]").unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(&event, "{}").unwrap();
    let broken_config = dir.path().join("broken.yaml");
    std::fs::write(&broken_config, "routes: [").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["explain", "--config", config, "/nonexistent/event.json"],
            "cannot read /nonexistent/event.json",
        ),
        (
            &["explain", "--config", config, not_json.to_str().unwrap()],
            "the body is not JSON",
        ),
        (
            &["explain", "--config", config, array.to_str().unwrap()],
            "JSON but not an object",
        ),
        (
            &[
                "explain",
                "--config",
                config,
                "--path",
                "pending",
                event.to_str().unwrap(),
            ],
            "must start with /",
        ),
        (
            &[
                "explain",
                "--config",
                broken_config.to_str().unwrap(),
                array.to_str().unwrap(),
            ],
            "broken.yaml:2:1: invalid YAML",
        ),
    ];
    for (args, needle) in cases {
        let out = hookfan(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
