//! `hookfan check`, `init` and `schema`: the config, before anything runs.

use super::*;

/// `hookfan check`: validates the config and prints the route table. With `no_env`, every
/// `${VAR}` stands for a placeholder that passes validation, so a config can be linted
/// without its secrets (CI). With `json`, prints the verdict as one JSON document instead.
pub fn check(config_path: &Path, no_env: bool, json: bool) -> anyhow::Result<()> {
    if json {
        return check_json(config_path, no_env);
    }
    let config = if no_env {
        let (config, held) = config::load_with_placeholders(config_path, Placeholders::All)?;
        println!(
            "{}: OK without the environment ({} ${{VAR}} reference{} taken as set)",
            config_path.display(),
            held.len(),
            if held.len() == 1 { "" } else { "s" }
        );
        config
    } else {
        let config = config::load(config_path)?;
        println!("{}: OK", config_path.display());
        config
    };
    for warning in config.render_warnings(&config_path.display().to_string()) {
        eprintln!("{warning}");
    }
    println!(
        "listen {}  data_dir {}  max_body_bytes {}  dedup_window {}",
        config
            .listen()
            .map_or("off".to_string(), |addr| addr.to_string()),
        config.data_dir().display(),
        config.max_body_bytes(),
        humantime::format_duration(config.dedup_window())
    );
    let keys: Vec<&str> = config.apps().iter().map(|a| a.api_key()).collect();
    println!("apps (X-Api-Key): {}", keys.join(", "));
    println!();
    let rows: Vec<[String; 6]> = config
        .routes()
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                if r.enabled { "yes".into() } else { "no".into() },
                r.filter.describe(),
                r.paths.describe(),
                r.destination.kind().key().into(),
                r.destination.target(),
            ]
        })
        .collect();
    print_table(
        &[
            "ROUTE",
            "ENABLED",
            "EVENT TYPES",
            "PATHS",
            "DESTINATION",
            "TARGET",
        ],
        &rows,
    );
    let conditions: Vec<[String; 2]> = config
        .routes()
        .iter()
        .filter_map(|r| Some([r.name.clone(), r.content.describe()?]))
        .collect();
    if !conditions.is_empty() {
        println!();
        print_table(&["ROUTE", "CONDITIONS ON THE BODY"], &conditions);
    }
    if !config.passthrough().is_empty() {
        println!();
        let rows: Vec<[String; 4]> = config
            .passthrough()
            .iter()
            .map(|p| {
                [
                    p.path.clone(),
                    p.url.to_string(),
                    p.timeout.map_or("Stream's deadline".into(), |t| {
                        humantime::format_duration(t).to_string()
                    }),
                    p.concurrency.to_string(),
                ]
            })
            .collect();
        print_table(&["PASSTHROUGH", "HANDLER", "TIMEOUT", "CONCURRENCY"], &rows);
    }
    Ok(())
}

/// `hookfan check --json`: `{"file", "valid", "errors": [...], "warnings": [...]}` on
/// stdout whenever the file could be read, each problem as [`diagnostic_json`]; exits 1 when
/// `valid` is false. A file that cannot be read is an error on stderr, as without `--json`.
fn check_json(config_path: &Path, no_env: bool) -> anyhow::Result<()> {
    let loaded = if no_env {
        config::load_with_placeholders(config_path, Placeholders::All).map(|(config, _)| config)
    } else {
        config::load(config_path)
    };
    let (errors, warnings) = match loaded {
        Ok(config) => (Vec::new(), config.warnings().to_vec()),
        Err(config::ConfigError::Invalid { diagnostics, .. }) => (diagnostics, Vec::new()),
        Err(e @ config::ConfigError::Read { .. }) => return Err(e.into()),
    };
    let verdict = serde_json::json!({
        "file": config_path.display().to_string(),
        "valid": errors.is_empty(),
        "errors": errors.iter().map(diagnostic_json).collect::<Vec<_>>(),
        "warnings": warnings.iter().map(diagnostic_json).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&verdict)?);
    if !errors.is_empty() {
        bail!(
            "{}: {} error{} found",
            config_path.display(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// One diagnostic as `check --json` prints it: `line` and `column` (1-based, in the file as
/// written), `path` (the key path, or null for a problem in the text itself), `code` (the
/// stable kind: [`config::Problem::code`]) and `message`.
fn diagnostic_json(d: &config::Diagnostic) -> serde_json::Value {
    serde_json::json!({
        "line": d.line,
        "column": d.column,
        "path": d.path,
        "code": d.problem.code(),
        "message": d.message,
    })
}

/// The starter routes.yaml that `hookfan init` writes: the repository's own, so the file a
/// new user starts from is the one the tests check.
pub const STARTER: &str = include_str!("../../routes.yaml");

/// `hookfan init`: writes the starter routes.yaml to `config_path`, never over an existing
/// file.
pub fn init(config_path: &Path) -> anyhow::Result<()> {
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(config_path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} already exists; hookfan init never overwrites a file: remove it, or pass --config PATH for a new file",
            config_path.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot create {}", config_path.display()))
        }
    };
    std::io::Write::write_all(&mut file, STARTER.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let dir = config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    println!("wrote {}. Next:", config_path.display());
    println!(
        "  hookfan schema > {}   # editor completion (the file's first line points there)",
        dir.join(config::schema::FILE_NAME).display()
    );
    println!(
        "  STREAM_API_KEY=... STREAM_API_SECRET=... hookfan check --config {}",
        config_path.display()
    );
    Ok(())
}

/// `hookfan schema`: the JSON Schema of routes.yaml.
pub fn schema() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&config::schema::json())?);
    Ok(())
}
