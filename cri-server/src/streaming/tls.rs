//! Optional HTTPS for the streaming server: a PEM certificate chain and
//! key from `[streaming] tls_cert_file` / `tls_key_file`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::StreamingError;

fn tls_err<E>(what: &'static str, path: &Path) -> impl FnOnce(E) -> StreamingError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let path = path.to_path_buf();
    move |e| StreamingError::Tls {
        what,
        path,
        source: Box::new(e),
    }
}

/// A TLS acceptor (HTTP/1.1 over TLS 1.2/1.3) for the files given.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, StreamingError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(tls_err("certificate", cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(tls_err("certificate", cert))?;
    if certs.is_empty() {
        return Err(tls_err("certificate", cert)(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no certificate in the file",
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(tls_err("private key", key))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err("configuration", cert))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_err("configuration", cert))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
