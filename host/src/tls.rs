//! TLS on the node's own listener (`tls_cert` / `tls_key`): HTTPS and WSS
//! without a proxy in front.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

use crate::config::Config;

/// The acceptor for `config`'s certificate, or `None` for plain HTTP.
/// Every error names the setting and the file.
pub fn from_config(config: &Config) -> anyhow::Result<Option<TlsAcceptor>> {
    if let Some(e) = config.tls_pair_error() {
        return Err(anyhow!(e));
    }
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => acceptor(cert, key).map(Some),
        _ => Ok(None),
    }
}

/// Reads a PEM certificate chain and its private key.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let cert_pem =
        std::fs::read(cert).with_context(|| format!("cannot read tls_cert {}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("tls_cert {}: invalid PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(anyhow!(
            "tls_cert {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            cert.display()
        ));
    }
    let key_pem =
        std::fs::read(key).with_context(|| format!("cannot read tls_key {}", key.display()))?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow!(
            "tls_key {}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            key.display()
        )
    })?;
    // The provider is named rather than taken from the process default:
    // ring is the one built in.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            anyhow!(
                "tls_cert {} and tls_key {} do not make a usable certificate: {e}",
                cert.display(),
                key.display()
            )
        })?;
    // The listener speaks HTTP/1.1 only (WebSocket upgrades need it).
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(tls)))
}
