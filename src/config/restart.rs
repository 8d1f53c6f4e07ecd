//! The settings a reload cannot change: the one list of them, which the reload and the
//! README both follow (a test below holds the README to it).
//!
//! A reload that changes one of these logs that a restart is needed and keeps the running
//! value; everything else in routes.yaml applies without a restart.

use super::Config;

/// Why a reload is refused as a whole: a new value that cannot work with a setting only a
/// restart changes. The previous config keeps running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadRefused {
    /// Every large or chunked webhook would be answered 503 until a restart.
    #[error("max_body_bytes ({next}) is more than the running max_buffered_bytes ({running}), which only a restart changes")]
    BodyOverBufferBudget { next: usize, running: usize },
    /// A webhook must fit in half of one of the running spool's segments.
    #[error("max_body_bytes ({next}) is more than half the running spool_segment_bytes ({running}), which only a restart changes")]
    BodyOverHalfSegment { next: usize, running: u64 },
}

/// What a reload runs: the new config with the running values of the settings only a
/// restart changes, and the names of those the file changed (to log that a restart is
/// needed).
#[derive(Debug)]
pub struct Reloaded {
    pub config: Config,
    pub kept: Vec<&'static str>,
}

/// One setting only a restart changes: the running value stays (the fields of
/// [`Fixed`](super::Fixed)
/// are kept whole by [`Config::reloaded`]; `tls` on or off by its rule there).
struct RestartOnly {
    /// How the README and the log name it.
    name: &'static str,
    /// `next` changes it from `running`.
    changed: fn(running: &Config, next: &Config) -> bool,
}

/// A setting that is one field of [`Fixed`](super::Fixed).
macro_rules! field {
    ($name:ident) => {
        RestartOnly {
            name: stringify!($name),
            changed: |r, n| r.fixed.$name != n.fixed.$name,
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
        changed: |r, n| r.reloadable.tls.is_some() != n.reloadable.tls.is_some(),
    },
    // Semaphores and budgets sized once.
    field!(max_connections),
    field!(max_buffered_bytes),
    // The delivery threads' priority is set when they start.
    field!(delivery_nice),
    // The connection to Redis is made once.
    field!(dedup),
    // The trace exporter starts with the process.
    field!(tracing),
];

impl Config {
    /// The config a reload from this running one to `next` (just loaded and validated)
    /// runs: `next` with this config's restart-only settings, or why `next` cannot run
    /// beside them. Pure.
    pub fn reloaded(&self, mut next: Config) -> Result<Reloaded, ReloadRefused> {
        if next.max_body_bytes() > self.max_buffered_bytes() {
            return Err(ReloadRefused::BodyOverBufferBudget {
                next: next.max_body_bytes(),
                running: self.max_buffered_bytes(),
            });
        }
        if 2 * next.max_body_bytes() as u64 > self.spool_segment_bytes() {
            return Err(ReloadRefused::BodyOverHalfSegment {
                next: next.max_body_bytes(),
                running: self.spool_segment_bytes(),
            });
        }
        let kept = self.restart_only_changes(&next);
        next.fixed = self.fixed.clone();
        // New certificate files apply; serving TLS or not is decided at start.
        if next.reloadable.tls.is_some() != self.reloadable.tls.is_some() {
            next.reloadable.tls.clone_from(&self.reloadable.tls);
        }
        Ok(Reloaded { config: next, kept })
    }

    /// The restart-only settings `next` changes from this running config, by name.
    fn restart_only_changes(&self, next: &Config) -> Vec<&'static str> {
        RESTART_ONLY
            .iter()
            .filter(|s| (s.changed)(self, next))
            .map(|s| s.name)
            .collect()
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
        let next = config("listen: 127.0.0.1:2\nmax_connections: 20\nshutdown_grace: 2s\n");
        let Reloaded { config: next, kept } = running.reloaded(next).expect("a valid reload");
        assert_eq!(kept, ["listen", "max_connections"]);
        assert_eq!(running.restart_only_changes(&next), Vec::<&str>::new());
        assert_eq!(next.max_connections(), 10, "the running value kept");
        assert_eq!(
            next.shutdown_grace(),
            std::time::Duration::from_secs(2),
            "a reloadable setting is not touched"
        );
    }

    /// Every setting of the restart-only list is kept at its running value and named, and
    /// nothing else is: the list and the kept part ([`super::super::Fixed`]) agree.
    #[test]
    fn a_reload_changing_every_restart_only_setting_keeps_and_names_each() {
        let running = config("tls: { cert: /c.pem, key: /k.pem }\n");
        let next = config(
            "listen: 127.0.0.1:7001\nadmin_listen: 127.0.0.1:7002\ndata_dir: /elsewhere\nspool_segment_bytes: 67108864\nmax_connections: 7\nmax_buffered_bytes: 134217728\ndelivery_nice: 9\ndedup: { backend: redis, url: \"redis://127.0.0.1:6379/0\" }\ntracing: { sample_ratio: 0.5 }\n",
        );
        let Reloaded {
            config: kept,
            kept: names,
        } = running.reloaded(next).unwrap();
        let all: Vec<&str> = RESTART_ONLY.iter().map(|s| s.name).collect();
        assert_eq!(names, all);
        assert_eq!(format!("{:?}", kept.fixed), format!("{:?}", running.fixed));
        assert_eq!(kept.tls(), running.tls(), "TLS stays on");
    }

    #[test]
    fn a_reload_whose_body_limit_the_running_budgets_cannot_hold_is_refused() {
        const MIB: usize = 1 << 20;
        let running = config("max_buffered_bytes: 67108864\nspool_segment_bytes: 16777216\n");
        let over_budget = config(
            "max_body_bytes: 68157440\nmax_buffered_bytes: 268435456\nspool_segment_bytes: 1073741824\n",
        );
        assert_eq!(
            running.reloaded(over_budget).unwrap_err(),
            ReloadRefused::BodyOverBufferBudget {
                next: 65 * MIB,
                running: 64 * MIB
            }
        );
        let over_segment = config("max_body_bytes: 8388609\nspool_segment_bytes: 1073741824\n");
        let refused = running.reloaded(over_segment).unwrap_err();
        assert_eq!(
            refused,
            ReloadRefused::BodyOverHalfSegment {
                next: 8 * MIB + 1,
                running: 16 * MIB as u64
            }
        );
        assert!(refused.to_string().contains("which only a restart changes"));
        let fits = config("max_body_bytes: 8388608\nspool_segment_bytes: 1073741824\n");
        let reloaded = running.reloaded(fits).expect("exactly half a segment fits");
        assert_eq!(reloaded.kept, ["spool_segment_bytes"]);
        assert_eq!(reloaded.config.spool_segment_bytes(), 16 * MIB as u64);
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
