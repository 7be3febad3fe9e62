//! TLS for federation, on rustls with the ring provider: the client's trust
//! (the web PKI roots plus configured CAs, and a per-destination opt-out for
//! test servers with self-signed certificates) and the listener's
//! certificate (configured PEM files, or a self-signed one made once and kept
//! in the data directory).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read(path.to_owned(), e.to_string()))
}

/// The client configuration that verifies certificates: web PKI roots and
/// every certificate in the `extra_ca` PEM files.
pub fn verifying_client(extra_ca: &[PathBuf]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for path in extra_ca {
        let pem = read(path)?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| TlsError::Read(path.clone(), e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| TlsError::Read(path.clone(), e.to_string()))?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(finish_client(config))
}

/// The client configuration for destinations listed as test servers: any
/// certificate is accepted (the handshake signature is still checked, so the
/// peer holds the key of the certificate it shows). Federation requests and
/// events stay authenticated by their Ed25519 signatures either way.
pub fn unverified_client() -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(finish_client(config))
}

fn finish_client(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Where the listener's certificate comes from.
#[derive(Debug, Clone)]
pub enum ServerCertificate {
    /// PEM files: a certificate chain and its private key.
    Files { chain: PathBuf, key: PathBuf },
    /// A self-signed certificate for `names`, created in `dir` on first use
    /// and reused after (so peers that pinned it keep working).
    SelfSigned { dir: PathBuf, names: Vec<String> },
}

/// The listener's TLS configuration.
pub fn server_config(cert: &ServerCertificate) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain_path, key_path) = match cert {
        ServerCertificate::Files { chain, key } => (chain.clone(), key.clone()),
        ServerCertificate::SelfSigned { dir, names } => self_signed(dir, names)?,
    };
    let chain_pem = read(&chain_path)?;
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read(chain_path.clone(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Read(chain_path, "no certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&key_path)?)
        .map_err(|e| TlsError::Read(key_path.clone(), e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn self_signed(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let chain = dir.join("federation-tls.crt");
    let key = dir.join("federation-tls.key");
    if chain.exists() && key.exists() {
        return Ok((chain, key));
    }
    let made = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Config(format!("cannot make a certificate: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|e| TlsError::Read(dir.to_owned(), e.to_string()))?;
    std::fs::write(&chain, made.cert.pem())
        .map_err(|e| TlsError::Read(chain.clone(), e.to_string()))?;
    write_private(&key, made.key_pair.serialize_pem().as_bytes())?;
    Ok((chain, key))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| TlsError::Read(path.to_owned(), e.to_string()))
}
