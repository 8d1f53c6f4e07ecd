//! `config::from_str` (the whole routes.yaml pipeline: `${VAR}` substitution, YAML, key lint,
//! serde, validation) on arbitrary text: it must never panic, every diagnostic must point at
//! a line and column of the text, and what it accepts must keep the config's promises.
//!
//! `${VAR}`s see a fixed environment, the variables of the shipped routes.yaml plus a few
//! edge cases (set but empty); nothing is read from the process environment.
#![no_main]

use std::collections::HashSet;

use hookfan::config::{self, ConfigError};
use libfuzzer_sys::fuzz_target;

fn env(name: &str) -> Option<String> {
    let value = match name {
        "STREAM_API_KEY" => "key",
        "STREAM_API_SECRET" => "test_secret_do_not_use_in_production",
        "HOOKFAN_LISTEN" => "127.0.0.1:0",
        "HOOKFAN_DATA_DIR" => "./data",
        "MODERATION_HANDLER_URL" => "http://127.0.0.1:3000/hooks",
        "SQS_ENABLED" => "true",
        "EMPTY" => "",
        "SPACED" => " a b ",
        "QUOTE" => "\"",
        _ => return None,
    };
    Some(value.to_string())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::from_str("routes.yaml", text, env) {
        Ok(config) => {
            assert!(!config.apps().is_empty(), "accepted a config without apps");
            let mut names = HashSet::new();
            for route in config.routes() {
                assert!(
                    names.insert(&route.name),
                    "two routes named {:?}",
                    route.name
                );
                let retry = route.destination.retry();
                assert!(!retry.initial_backoff().is_zero());
                assert!(retry.initial_backoff() <= retry.max_backoff());
                assert!(route.destination.concurrency() >= 1);
            }
            assert!(config.max_body_bytes() >= 1);
        }
        Err(err @ ConfigError::Invalid { .. }) => {
            let rendered = err.to_string();
            let ConfigError::Invalid { file, diagnostics } = err else {
                unreachable!()
            };
            assert_eq!(file, "routes.yaml");
            assert!(!diagnostics.is_empty(), "invalid without a diagnostic");
            // Substituted values hold no line break, so lines are those of the text, with
            // YAML's line breaks (a lone CR is one too); YAML may point one past the last
            // line (end of input).
            let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count();
            for d in &diagnostics {
                assert!(
                    (1..=lines + 1).contains(&d.line),
                    "line {} outside 1..={}: {d:?}",
                    d.line,
                    lines + 1
                );
                assert!(d.column >= 1, "column 0: {d:?}");
                assert!(!d.message.is_empty());
                let shown = format!("routes.yaml:{}:{}: {}", d.line, d.column, d.message);
                assert!(rendered.contains(&shown), "Display lacks {shown:?}");
            }
        }
        Err(err @ ConfigError::Read { .. }) => panic!("text was given, nothing to read: {err}"),
    }
});
