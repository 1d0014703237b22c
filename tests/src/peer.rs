//! Playing a member from the test process: a pinned mTLS Federation client
//! with a member's own TLS identity, for tests that need a peer that lies
//! (e.g. one that shows different histories to different members).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use lienthong_federation::tls::{SpkiPin, TlsIdentity};
use lienthong_proto::v1::federation_client::FederationClient;
use tonic::transport::Channel;

/// The peer TLS identity of the node initialised in `node_dir`.
pub fn peer_identity(node_dir: &Path) -> Result<TlsIdentity> {
    let read = |p: &str| {
        std::fs::read_to_string(node_dir.join(p))
            .with_context(|| format!("reading {p} in {}", node_dir.display()))
    };
    Ok(TlsIdentity {
        cert_pem: read("tls/peer-cert.pem")?,
        key_pem: read("tls/peer-key.pem")?,
    })
}

/// A Federation client to `endpoint` presenting `identity`, accepting only
/// the server key `pin` (as members do).
pub async fn federation_client(
    endpoint: &str,
    identity: &TlsIdentity,
    pin: SpkiPin,
) -> Result<FederationClient<Channel>> {
    Ok(FederationClient::new(
        lienthong_federation::channel::connect_pinned(endpoint, identity, pin).await?,
    ))
}

/// Serves `service` as a member's Federation API on `listener`, with that
/// member's TLS identity, accepting only clients whose key is in `pins`.
/// Runs until the returned task is aborted.
pub fn serve_federation<S>(
    listener: tokio::net::TcpListener,
    identity: &TlsIdentity,
    pins: lienthong_federation::tls::PinSet,
    service: S,
) -> Result<tokio::task::JoinHandle<()>>
where
    S: lienthong_proto::v1::federation_server::Federation,
{
    let config = lienthong_federation::tls::server_config(identity, pins)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = tx.send(Ok::<_, std::io::Error>(tls)).await;
                }
            });
        }
    });
    let server = tonic::transport::Server::builder()
        .add_service(lienthong_proto::v1::federation_server::FederationServer::new(service));
    Ok(tokio::spawn(async move {
        let _ = server
            .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
    }))
}
