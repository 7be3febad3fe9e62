//! The HTTPS transport against the TLS listener on loopback: certificates
//! are checked unless the destination is listed as a test server, a
//! configured CA is trusted, and private addresses are refused unless
//! allowed.

use conifer_federation::{FederationRequest, Transport, TransportError};
use conifer_https::{serve_tls, server_config, ClientSettings, HttpsTransport, ServerCertificate};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use std::path::Path;

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
fn ca_and_leaf(dir: &Path) -> ServerCertificate {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("leaf.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("leaf.key"), leaf_key.serialize_pem()).unwrap();
    ServerCertificate::Files {
        chain: dir.join("leaf.pem"),
        key: dir.join("leaf.key"),
    }
}

async fn listener(cert: &ServerCertificate) -> String {
    let app = axum::Router::new().route(
        "/_matrix/federation/v1/version",
        axum::routing::get(|| async {
            axum::Json(serde_json::json!({ "server": { "name": "test" } }))
        }),
    );
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let name = format!("127.0.0.1:{}", tcp.local_addr().unwrap().port());
    tokio::spawn(serve_tls(
        tcp,
        server_config(cert).unwrap(),
        app,
        conifer_https::HttpLimits::default(),
    ));
    name
}

async fn version(settings: ClientSettings, destination: &str) -> Result<String, TransportError> {
    let t = HttpsTransport::new(&settings).unwrap();
    let r = t
        .send(FederationRequest {
            destination: destination.to_owned(),
            method: "GET".into(),
            uri: "/_matrix/federation/v1/version".into(),
            body: None,
            authorization: None,
        })
        .await?;
    assert_eq!(r.status, 200);
    Ok(String::from_utf8(r.body).unwrap())
}

fn loopback() -> Vec<String> {
    vec!["127.0.0.0/8".into()]
}

/// A client that may reach loopback and skips verifying `server`.
fn listed(server: &str) -> ClientSettings {
    ClientSettings {
        ip_range_allow: loopback(),
        insecure_skip_verify: vec![server.to_owned()],
        ..Default::default()
    }
}

#[tokio::test]
async fn certificates_are_checked_unless_trusted_or_listed() {
    let dir = tempfile::tempdir().unwrap();
    let cert = ca_and_leaf(dir.path());
    let server = listener(&cert).await;

    let unknown_ca = ClientSettings {
        ip_range_allow: loopback(),
        ..Default::default()
    };
    let err = version(unknown_ca, &server).await.unwrap_err().to_string();
    assert!(err.contains("TLS"), "{err}");

    let trusted = ClientSettings {
        ip_range_allow: loopback(),
        trust_ca: vec![dir.path().join("ca.pem")],
        ..Default::default()
    };
    assert!(version(trusted, &server).await.unwrap().contains("test"));

    assert!(version(listed(&server), &server)
        .await
        .unwrap()
        .contains("test"));
}

#[tokio::test]
async fn a_self_signed_listener_serves_listed_clients() {
    let dir = tempfile::tempdir().unwrap();
    let cert = ServerCertificate::SelfSigned {
        dir: dir.path().to_owned(),
        names: vec!["127.0.0.1".into()],
    };
    let server = listener(&cert).await;
    // Made once, then reused.
    assert!(dir.path().join("federation-tls.crt").exists());
    assert!(version(listed(&server), &server)
        .await
        .unwrap()
        .contains("test"));
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let server = listener(&ca_and_leaf(dir.path())).await;
    let strict = ClientSettings {
        insecure_skip_verify: vec![server.clone()],
        ..Default::default()
    };
    let err = version(strict, &server).await.unwrap_err().to_string();
    assert!(err.contains("ip_range_allow"), "{err}");
}

#[tokio::test]
async fn only_allowed_servers_are_contacted_when_a_list_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let server = listener(&ca_and_leaf(dir.path())).await;
    let closed = ClientSettings {
        ip_range_allow: loopback(),
        insecure_skip_verify: vec![server.clone()],
        allowed_servers: Some(vec!["127.0.0.1:1".into()]),
        ..Default::default()
    };
    let err = version(closed, &server).await.unwrap_err().to_string();
    assert!(err.contains("allowed_servers"), "{err}");
}
