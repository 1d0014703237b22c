//! Real TLS 1.3 handshakes over loopback between members pinned by SPKI
//! hash (issue 4, item 2): pinned peers connect and learn each other's
//! member code; an unpinned, wrong-member or expired certificate is refused
//! at the handshake.

use std::sync::Arc;

use lienthong_federation::tls::{PinSet, SpkiPin, TlsIdentity, client_config, server_config};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn identity(member: &str) -> TlsIdentity {
    TlsIdentity::generate(member, now(), 365).expect("identity")
}

/// Runs one handshake: `server` accepts members `pins`; the client presents
/// `client` and expects the server's pin `expect`. Returns the member the
/// server saw, or the error of either side.
async fn handshake(
    server: &TlsIdentity,
    pins: PinSet,
    client: &TlsIdentity,
    expect: SpkiPin,
) -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(
        server_config(server, pins.clone()).map_err(|e| e.to_string())?,
    ));
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| format!("server: {e}"))?;
        let peer: Vec<CertificateDer<'static>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        let member = peer
            .first()
            .and_then(|c| pins.member_of(c))
            .ok_or("no pinned peer")?;
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(member)
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(
        client_config(client, expect).map_err(|e| e.to_string())?,
    ));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("peer.lienthong.invalid").map_err(|e| e.to_string())?;
    let client_result = async {
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("client: {e}"))?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("client read: {e}"))?;
        if buf != b"ok" {
            return Err(format!("client read {buf:?}"));
        }
        Ok(())
    }
    .await;
    let server_result = server_task.await.map_err(|e| e.to_string())?;
    match (client_result, server_result) {
        (Ok(()), Ok(member)) => Ok(member),
        (c, s) => Err(format!("{c:?} / {s:?}")),
    }
}

#[tokio::test]
async fn pinned_members_connect_and_learn_each_others_code() {
    let (a, b) = (identity("01"), identity("24"));
    let pins = PinSet::new([
        ("01".to_owned(), a.pin().unwrap()),
        ("24".to_owned(), b.pin().unwrap()),
    ]);
    assert_eq!(
        handshake(&a, pins, &b, a.pin().unwrap()).await,
        Ok("24".to_owned())
    );
}

#[tokio::test]
async fn an_unpinned_client_is_refused() {
    let (a, stranger) = (identity("01"), identity("99"));
    let pins = PinSet::new([("01".to_owned(), a.pin().unwrap())]);
    let r = handshake(&a, pins, &stranger, a.pin().unwrap()).await;
    assert!(
        r.as_ref().is_err_and(
            |e| e.contains("server: invalid peer certificate: ApplicationVerificationFailure")
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_server_that_is_not_the_expected_member_is_refused() {
    let (a, b, c) = (identity("01"), identity("24"), identity("20"));
    let pins = PinSet::new([
        ("01".to_owned(), a.pin().unwrap()),
        ("24".to_owned(), b.pin().unwrap()),
        ("20".to_owned(), c.pin().unwrap()),
    ]);
    // b calls expecting 20 (c) but reaches 01 (a): refused by the client.
    let r = handshake(&a, pins, &b, c.pin().unwrap()).await;
    assert!(
        r.as_ref().is_err_and(
            |e| e.contains("client: invalid peer certificate: ApplicationVerificationFailure")
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn an_expired_pinned_certificate_is_refused() {
    let a = identity("01");
    let old = TlsIdentity::generate("24", now() - time::Duration::days(400), 30).unwrap();
    let pins = PinSet::new([
        ("01".to_owned(), a.pin().unwrap()),
        ("24".to_owned(), old.pin().unwrap()),
    ]);
    let r = handshake(&a, pins, &old, a.pin().unwrap()).await;
    assert!(
        r.as_ref()
            .is_err_and(|e| e.contains("server: invalid peer certificate: Expired")),
        "{r:?}"
    );
    // Renewed with the same key, the same pin is accepted again.
    let renewed = old.renew("24", now(), 30).unwrap();
    assert_eq!(renewed.pin().unwrap(), old.pin().unwrap());
    let pins = PinSet::new([
        ("01".to_owned(), a.pin().unwrap()),
        ("24".to_owned(), renewed.pin().unwrap()),
    ]);
    assert_eq!(
        handshake(&a, pins, &renewed, a.pin().unwrap()).await,
        Ok("24".to_owned())
    );
}

#[test]
fn pins_round_trip_as_hex_and_differ_per_key() {
    let a = identity("01");
    assert_eq!(
        SpkiPin::from_hex(&a.pin().unwrap().to_hex()),
        Some(a.pin().unwrap())
    );
    assert_ne!(a.pin().unwrap(), identity("01").pin().unwrap());
}
