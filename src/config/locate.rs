//! Where a running daemon's admin listener and spool are, read from routes.yaml without
//! validating the rest of it.
//!
//! Owns: the two keys a probe needs (`admin_listen`, `data_dir`). Never: requires the app
//! secrets. `hookfan healthcheck` runs where the secrets are not in the environment (a
//! container's HEALTHCHECK, an operator's shell), so a `${VAR}` that is unset reads as empty
//! instead of being an error, and keys other than these two are not looked at.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{env, tree, ConfigError, Diagnostic, DEFAULT_ADMIN_LISTEN, DEFAULT_DATA_DIR};

/// The admin listener and the spool directory, as configured.
#[derive(Debug, PartialEq)]
pub struct AdminLocation {
    /// None when `admin_listen: off`.
    pub admin_listen: Option<SocketAddr>,
    /// Holds `admin.addr`, the address actually bound (for `admin_listen` with port 0).
    pub data_dir: PathBuf,
}

/// Reads `admin_listen` and `data_dir` from config `text` (`file` names it in diagnostics);
/// `lookup` resolves `${VAR}`, and a variable it does not know reads as empty.
pub fn admin_location(
    file: &str,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<AdminLocation, ConfigError> {
    let invalid = |diagnostics: Vec<Diagnostic>| ConfigError::Invalid {
        file: file.to_string(),
        diagnostics,
    };
    let (text, diagnostics, _) = env::substitute(text, |name| lookup(name).or(Some(String::new())));
    if !diagnostics.is_empty() {
        return Err(invalid(diagnostics));
    }
    let root = tree::parse(&text).map_err(|d| invalid(vec![d]))?;
    let scalar = |key: &str| {
        root.get(key)
            .map(|node| (node.as_str().unwrap_or("").trim(), node.line, node.column))
    };
    let admin_listen = match scalar("admin_listen").unwrap_or((DEFAULT_ADMIN_LISTEN, 1, 1)) {
        ("off", _, _) => None,
        (text, line, column) => Some(text.parse::<SocketAddr>().map_err(|_| {
            invalid(vec![Diagnostic::new(
                line,
                column,
                format!("admin_listen: \"{text}\" is not an IP:PORT address, or off (is its environment variable set here?)"),
            )])
        })?),
    };
    let data_dir = match scalar("data_dir").unwrap_or((DEFAULT_DATA_DIR, 1, 1)) {
        ("", line, column) => {
            return Err(invalid(vec![Diagnostic::new(
                line,
                column,
                "data_dir is empty (is its environment variable set here?)",
            )]))
        }
        (dir, _, _) => PathBuf::from(dir),
    };
    Ok(AdminLocation {
        admin_listen,
        data_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locate(text: &str, env: &[(&str, &str)]) -> Result<AdminLocation, ConfigError> {
        admin_location("routes.yaml", text, |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn reads_admin_listen_and_data_dir_without_the_app_secrets() {
        let text = "admin_listen: ${ADMIN:-0.0.0.0:9090}\ndata_dir: /data\n\
                    apps:\n  - api_key: ${STREAM_API_KEY}\n    api_secret: ${STREAM_API_SECRET}\n\
                    routes: []\n";
        let found = locate(text, &[]).expect("the secrets are not needed");
        assert_eq!(
            found,
            AdminLocation {
                admin_listen: Some("0.0.0.0:9090".parse().unwrap()),
                data_dir: PathBuf::from("/data"),
            }
        );
        let found = locate(text, &[("ADMIN", "127.0.0.1:0")]).unwrap();
        assert_eq!(found.admin_listen, Some("127.0.0.1:0".parse().unwrap()));
    }

    #[test]
    fn missing_keys_take_the_daemons_defaults_and_off_means_no_listener() {
        let found = locate("routes: []\n", &[]).unwrap();
        assert_eq!(
            found.admin_listen,
            Some(DEFAULT_ADMIN_LISTEN.parse().unwrap())
        );
        assert_eq!(found.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(
            locate("admin_listen: off\n", &[]).unwrap().admin_listen,
            None
        );
    }

    #[test]
    fn an_unset_admin_listen_variable_is_an_error_that_names_the_key() {
        let err = locate("admin_listen: ${ADMIN}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("admin_listen"), "{err}");
    }
}
