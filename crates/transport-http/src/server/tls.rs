//! HTTPS for [`serve_with`](super::serve_with) (feature `tls`): [`TlsConfig`], a certificate
//! chain and its key read from PEM, and [`TlsError`], which says which input is wrong and what
//! to give instead.
//!
//! rustls with the ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`; no client certificates.
//! The handshake itself runs in each connection's task, under [`ServeOptions::header_timeout`](super::ServeOptions::header_timeout).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A server certificate and its private key, ready for [`ServeOptions::tls`](super::ServeOptions::tls).
///
/// Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig(pub(crate) Arc<rustls::ServerConfig>);

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig(..)")
    }
}

/// Why a [`TlsConfig`] could not be made. Each message names the file (or input) at fault and
/// what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read the TLS {what} file {}: {source}. Check the path and that this user may read it", path.display())]
    Read {
        /// `"certificate"` or `"key"`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate input holds no `CERTIFICATE` block.
    #[error("{input} holds no certificate: give the server's certificate (then any intermediates) in PEM, blocks starting with -----BEGIN CERTIFICATE-----")]
    NoCertificate {
        /// The file, or "the certificate PEM".
        input: String,
    },
    /// The key input holds no private key block.
    #[error("{input} holds no private key: give the server's unencrypted private key in PEM (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)")]
    NoKey {
        /// The file, or "the key PEM".
        input: String,
    },
    /// An input is not well-formed PEM.
    #[error("{input} is not valid PEM ({reason}): give the file as PEM text, as openssl or certbot write it")]
    Pem {
        /// The file, or "the certificate PEM" / "the key PEM".
        input: String,
        /// What the parser found wrong.
        reason: String,
    },
    /// rustls refused the pair (for example the key does not match the certificate, or is of
    /// a kind it does not support).
    #[error("the TLS certificate and key cannot be used together ({reason}): check that the key belongs to the first certificate of the certificate file")]
    Rejected {
        /// What rustls said.
        reason: String,
    },
}

impl TlsConfig {
    /// Reads the certificate chain (the server's certificate first, then any intermediates)
    /// and its private key (PKCS#8, PKCS#1 or SEC1) from PEM files.
    pub fn from_pem_files(cert_chain: &Path, key: &Path) -> Result<TlsConfig, TlsError> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_owned(),
                source,
            })
        };
        let cert_pem = read("certificate", cert_chain)?;
        let key_pem = read("key", key)?;
        let certs = certificates(
            &cert_pem,
            &format!("the certificate file {}", cert_chain.display()),
        )?;
        let key = private_key(&key_pem, &format!("the key file {}", key.display()))?;
        build(certs, key)
    }

    /// The same from PEM text in memory.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<TlsConfig, TlsError> {
        let certs = certificates(cert_chain, "the certificate PEM")?;
        let key = private_key(key, "the key PEM")?;
        build(certs, key)
    }
}

fn certificates(pem: &[u8], input: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            input: input.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            input: input.to_owned(),
        });
    }
    Ok(certs)
}

fn private_key(pem: &[u8], input: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            input: input.to_owned(),
        },
        e => TlsError::Pem {
            input: input.to_owned(),
            reason: e.to_string(),
        },
    })
}

fn build(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<TlsConfig, TlsError> {
    let rejected = |e: rustls::Error| TlsError::Rejected {
        reason: e.to_string(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(rejected)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(rejected)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConfig(Arc::new(config)))
}
