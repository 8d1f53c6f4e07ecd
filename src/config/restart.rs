//! The settings a reload cannot change: the one list of them, which the reload and the
//! README both follow (a test below holds the README to it).
//!
//! A reload that changes one of these logs that a restart is needed and keeps the running
//! value; everything else in routes.yaml applies without a restart.

use super::Config;

/// One setting only a restart changes.
struct RestartOnly {
    /// How the README and the log name it.
    name: &'static str,
    /// `next` changes it from `running`.
    changed: fn(running: &Config, next: &Config) -> bool,
    /// Puts `running`'s value back into `next`.
    keep: fn(running: &Config, next: &mut Config),
}

/// A setting that is one field of [`Config`], compared and kept whole.
macro_rules! field {
    ($name:ident) => {
        RestartOnly {
            name: stringify!($name),
            changed: |r, n| r.$name != n.$name,
            keep: |r, n| n.$name.clone_from(&r.$name),
        }
    };
}

/// Each one, and why a reload cannot apply it.
const RESTART_ONLY: &[RestartOnly] = &[
    // The sockets are bound once.
    field!(listen),
    field!(admin_listen),
    // The spool is opened once, with its segment size.
    field!(data_dir),
    field!(spool_segment_bytes),
    // The listener is plain or TLS from the start (new certificate files are picked up).
    RestartOnly {
        name: "tls (turning it on or off)",
        changed: |r, n| r.tls.is_some() != n.tls.is_some(),
        keep: |r, n| {
            if n.tls.is_some() != r.tls.is_some() {
                n.tls.clone_from(&r.tls);
            }
        },
    },
    // Semaphores and budgets sized once.
    field!(max_connections),
    field!(max_buffered_bytes),
    // The delivery threads' priority is set when they start.
    field!(delivery_nice),
    // The connection to Redis is made once.
    field!(dedup),
];

impl Config {
    /// The restart-only settings `next` changes from this running config, by name.
    pub fn restart_only_changes(&self, next: &Config) -> Vec<&'static str> {
        RESTART_ONLY
            .iter()
            .filter(|s| (s.changed)(self, next))
            .map(|s| s.name)
            .collect()
    }

    /// `next` with this running config's restart-only settings.
    pub fn keep_restart_only(&self, next: &mut Config) {
        for setting in RESTART_ONLY {
            (setting.keep)(self, next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        let base = "apps:\n  - api_key: k\n    api_secret: s\nroutes:\n  - name: r\n    event_types: []\n    file: { path: /dev/null }\n";
        super::super::from_str("routes.yaml", &format!("{base}{yaml}"), |_| None)
            .expect("a valid config")
    }

    #[test]
    fn a_reload_names_each_restart_only_change_and_keeps_the_running_value() {
        let running = config("listen: 127.0.0.1:1\nmax_connections: 10\nshutdown_grace: 1s\n");
        let mut next = config("listen: 127.0.0.1:2\nmax_connections: 20\nshutdown_grace: 2s\n");
        assert_eq!(
            running.restart_only_changes(&next),
            ["listen", "max_connections"]
        );
        running.keep_restart_only(&mut next);
        assert_eq!(running.restart_only_changes(&next), Vec::<&str>::new());
        assert_eq!(next.max_connections, 10, "the running value kept");
        assert_eq!(
            next.shutdown_grace,
            std::time::Duration::from_secs(2),
            "a reloadable setting is not touched"
        );
    }

    #[test]
    fn the_readme_names_every_setting_that_needs_a_restart() {
        let readme = include_str!("../../README.md");
        let line = readme
            .split("\n\n")
            .flat_map(|paragraph| paragraph.split("\n- "))
            .find(|item| item.contains("need a restart"))
            .expect("the README says which settings need a restart");
        for setting in RESTART_ONLY {
            let key = setting.name.split(' ').next().expect("a name");
            assert!(
                line.contains(&format!("`{key}`")),
                "the README's list of settings that need a restart lacks `{key}`: {line}"
            );
        }
    }
}
