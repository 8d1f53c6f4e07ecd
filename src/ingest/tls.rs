//! TLS for the ingest listener: the certificate and key from `tls: {cert, key}`, swapped in
//! place when the files change, so a renewed certificate (certbot, cert-manager) is served
//! without a restart and without dropping a connection.
//!
//! A renewal that cannot be loaded (half-written file, key that does not match) keeps the
//! previous certificate serving, logs why, and counts `hookfan_tls_reloads_total{outcome="failure"}`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::TlsFiles;
use crate::live::LiveView;

/// How often the certificate files are compared with what is being served.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Why a certificate and key could not be loaded; each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tls.cert {path}: no certificate in it (expected a PEM file with -----BEGIN CERTIFICATE----- blocks, leaf first)")]
    NoCertificate { path: PathBuf },
    #[error("tls.cert {path}: {why}")]
    BadCertificate { path: PathBuf, why: String },
    #[error("tls.key {path}: no private key in it (expected a PEM file with a PKCS#8, PKCS#1 or SEC1 PRIVATE KEY block)")]
    NoKey { path: PathBuf },
    #[error("tls.key {path}: {why}")]
    BadKey { path: PathBuf, why: String },
    #[error("tls: the key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// What is served: the loaded pair, and the file bytes it came from (to notice changes).
struct Loaded {
    key: Arc<CertifiedKey>,
    source: (Vec<u8>, Vec<u8>),
}

/// Hands rustls the current certificate; [`watch`] replaces it.
pub struct CertStore {
    current: RwLock<Loaded>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertStore")
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("cert lock").key.clone())
    }
}

impl CertStore {
    /// Loads the files; an error here stops startup.
    pub fn open(files: &TlsFiles) -> Result<Arc<CertStore>, TlsError> {
        let source = read_both(files)?;
        let key = Arc::new(parse(files, &source)?);
        Ok(Arc::new(CertStore {
            current: RwLock::new(Loaded { key, source }),
        }))
    }

    /// A rustls acceptor that asks this store for its certificate on every handshake.
    pub fn acceptor(self: &Arc<Self>) -> TlsAcceptor {
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }

    /// Reloads when the files' bytes differ from what is served. Returns whether a new
    /// certificate is now served.
    pub fn refresh(&self, files: &TlsFiles) -> Result<bool, TlsError> {
        let source = read_both(files)?;
        if self.current.read().expect("cert lock").source == source {
            return Ok(false);
        }
        let key = Arc::new(parse(files, &source)?);
        *self.current.write().expect("cert lock") = Loaded { key, source };
        Ok(true)
    }
}

/// Compares the certificate files (as named by the running config, so a reload may point
/// at new paths) with what is served, every second, until `shutdown`.
pub async fn watch(store: Arc<CertStore>, live: LiveView, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Only one error line per distinct problem, not one a second.
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(files) = live.borrow().config.tls().cloned() else {
            continue; // switching TLS off needs a restart (the reload says so)
        };
        match store.refresh(&files) {
            Ok(false) => last_error = None,
            Ok(true) => {
                last_error = None;
                metrics::counter!("hookfan_tls_reloads_total", "outcome" => "success").increment(1);
                tracing::info!(cert = %files.cert.display(), "tls: serving the renewed certificate");
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    metrics::counter!("hookfan_tls_reloads_total", "outcome" => "failure")
                        .increment(1);
                    tracing::error!("{text}; still serving the previous certificate");
                    last_error = Some(text);
                }
            }
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_both(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    Ok((read(&files.cert)?, read(&files.key)?))
}

fn parse(
    files: &TlsFiles,
    (cert_pem, key_pem): &(Vec<u8>, Vec<u8>),
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: files.cert.clone(),
            why: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        tokio_rustls::rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: files.key.clone(),
        },
        e => TlsError::BadKey {
            path: files.key.clone(),
            why: e.to_string(),
        },
    })?;
    let provider: &CryptoProvider = &ring::default_provider();
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        tokio_rustls::rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        },
        e => TlsError::BadKey {
            path: files.key.clone(),
            why: e.to_string(),
        },
    })
}
