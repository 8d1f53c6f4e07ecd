//! `hookfan explain`: which routes would take an event, and why the others would not.

use std::io::Read;

use super::*;
use hookfan::route;

/// `hookfan explain FILE|-`: reads one event body (gzip accepted), as posted to `path`, and
/// prints each route's verdict. Verifies nothing, stores nothing. Every error is about the
/// input (an unreadable or malformed file or config): `main` exits 2 on one.
pub fn explain(config_path: &Path, file: &Path, path: &str, json: bool) -> anyhow::Result<()> {
    let config = load_for_operator(
        config_path,
        &["name", "enabled", "event_types", "paths", "match", "not"],
    )?;
    if !path.starts_with('/') {
        bail!("--path {path:?} must start with / (the request path, without its query)");
    }
    let raw = if file.as_os_str() == "-" {
        let mut raw = Vec::new();
        std::io::stdin()
            .read_to_end(&mut raw)
            .context("cannot read the event from standard input")?;
        raw
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let body = route::read_event(&Default::default(), raw.into(), config.max_body_bytes())
        .with_context(|| format!("{}: not an event", file.display()))?;
    let explained = route::explain(config.routes(), Some(&body), path);
    if json {
        println!("{}", serde_json::to_string_pretty(&explained)?);
        return Ok(());
    }
    println!(
        "event type {}, posted to {}",
        explained.event_type.as_deref().unwrap_or("(none)"),
        explained.path
    );
    println!();
    let rows: Vec<[String; 2]> = explained
        .routes
        .iter()
        .map(|v| {
            [
                v.route.clone(),
                match &v.skip {
                    None => "takes".to_string(),
                    Some(skip) => format!("skips: {skip}"),
                },
            ]
        })
        .collect();
    print_table(&["ROUTE", "VERDICT"], &rows);
    Ok(())
}
