//! TLS for overlay sessions, as Pinecone does it: each node presents a
//! self-signed Ed25519 certificate for its own overlay key, and each side
//! accepts the other if — and only if — the certificate's key is the key it
//! expects (the dialled key, or the overlay source of the packets). No CAs,
//! no dates: the overlay key *is* the identity.

use std::sync::Arc;

use conifer_overlay::{Identity, PublicKey};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// Our certificate and its private key.
pub(crate) struct Credentials {
    pub cert: CertificateDer<'static>,
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl Credentials {
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// The certificate Go Pinecone makes: X.509 v3, self-signed, CN and DNS SAN =
/// lowercase hex key, serial 1, valid from 0001-01-01 for a year from now,
/// Ed25519 key and signature, no key-usage extensions.
pub(crate) fn make_credentials(identity: &Identity) -> Result<Credentials, rcgen::Error> {
    let signing = ed25519_dalek::SigningKey::from_bytes(&identity.seed());
    let pkcs8 = signing
        .to_pkcs8_der()
        .map_err(|_| rcgen::Error::CouldNotParseKeyPair)?;
    let key_pair = rcgen::KeyPair::try_from(pkcs8.as_bytes())?;
    let hex = identity.public_key().to_hex();
    let mut params = rcgen::CertificateParams::new(vec![hex.clone()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hex);
    params.serial_number = Some(rcgen::SerialNumber::from(vec![1u8]));
    params.not_before = time::PrimitiveDateTime::new(
        time::Date::from_calendar_date(1, time::Month::January, 1).expect("valid date"),
        time::Time::MIDNIGHT,
    )
    .assume_utc();
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(Vec::new());
    let cert = params.self_signed(&key_pair)?;
    Ok(Credentials {
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()),
    })
}

/// The Ed25519 key in a certificate, if it is one.
pub(crate) fn cert_key(cert: &CertificateDer<'_>) -> Option<PublicKey> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let spki = parsed.public_key();
    // id-Ed25519, RFC 8410.
    if spki.algorithm.algorithm.to_id_string() != "1.3.101.112" {
        return None;
    }
    let raw: [u8; 32] = spki.subject_public_key.data.as_ref().try_into().ok()?;
    Some(PublicKey(raw))
}

/// A TLS server name that carries the key: its 64 hex digits as two labels
/// (a DNS label is at most 63 bytes, so the bare hex is not a valid name).
pub(crate) fn server_name_for(key: &PublicKey) -> ServerName<'static> {
    let hex = key.to_hex();
    ServerName::try_from(format!("{}.{}", &hex[..32], &hex[32..])).expect("hex labels are valid")
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client side: the server must prove the key we dialled.
#[derive(Debug)]
pub(crate) struct ExpectKey {
    pub expected: PublicKey,
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ExpectKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match cert_key(end_entity) {
            Some(k) if k == self.expected => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            None => Err(Error::InvalidCertificate(CertificateError::BadEncoding)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Server side: any Ed25519 certificate, whose key is then checked against
/// the overlay source of the connection once the handshake is done.
#[derive(Debug)]
pub(crate) struct AnyEd25519Client {
    pub provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyEd25519Client {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        cert_key(end_entity)
            .map(|_| ClientCertVerified::assertion())
            .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_overlay_key() {
        let id = Identity::from_seed([5; 32]);
        let creds = make_credentials(&id).unwrap();
        assert_eq!(cert_key(&creds.cert), Some(id.public_key()));
        let (_, parsed) = x509_parser::parse_x509_certificate(creds.cert.as_ref()).unwrap();
        let hex = id.public_key().to_hex();
        assert_eq!(parsed.version().0, 2, "X.509 v3");
        assert_eq!(parsed.raw_serial(), &[1]);
        assert_eq!(parsed.subject().to_string(), format!("CN={hex}"));
        assert_eq!(parsed.issuer(), parsed.subject(), "self-signed");
        assert_eq!(
            parsed.validity().not_before.timestamp(),
            -62_135_596_800,
            "0001-01-01"
        );
        assert!(parsed.key_usage().unwrap().is_none());
        let san = parsed.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            format!("{:?}", san.value.general_names),
            format!("[DNSName(\"{hex}\")]")
        );
    }

    #[test]
    fn verifier_accepts_only_the_dialled_key() {
        let a = make_credentials(&Identity::from_seed([1; 32])).unwrap();
        let b = Identity::from_seed([2; 32]).public_key();
        let v = ExpectKey {
            expected: b,
            provider: provider(),
        };
        let name = server_name_for(&b);
        let now = UnixTime::now();
        assert!(v.verify_server_cert(&a.cert, &[], &name, &[], now).is_err());
        let v = ExpectKey {
            expected: Identity::from_seed([1; 32]).public_key(),
            provider: provider(),
        };
        assert!(v.verify_server_cert(&a.cert, &[], &name, &[], now).is_ok());
        assert!(v
            .verify_server_cert(
                &CertificateDer::from(vec![0x30, 0x00]),
                &[],
                &name,
                &[],
                now
            )
            .is_err());
    }
}
