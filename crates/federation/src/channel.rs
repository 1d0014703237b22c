//! A gRPC channel to a member that trusts nothing but the member's pinned
//! key: the one way both nodes and test peers dial each other.

use std::sync::Arc;
use std::time::Duration;

use crate::tls::{SpkiPin, TlsError, TlsIdentity, client_config};

/// Why a member could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Our identity or the pin could not make a TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] TlsError),
    /// The endpoint is not `host:port`, or the connection failed
    /// (refused, timed out, handshake refused by either side).
    #[error("connecting to {endpoint}: {source}")]
    Transport {
        /// `host:port`.
        endpoint: String,
        /// Why.
        source: tonic::transport::Error,
    },
}

/// Connects to `endpoint` (`host:port`) presenting `identity`, accepting
/// only a server whose key is `pin`. TCP_NODELAY is set (small
/// request/answer pairs otherwise wait for delayed ACKs).
pub async fn connect_pinned(
    endpoint: &str,
    identity: &TlsIdentity,
    pin: SpkiPin,
) -> Result<tonic::transport::Channel, ConnectError> {
    let config = Arc::new(client_config(identity, pin)?);
    let connector = tokio_rustls::TlsConnector::from(config);
    let addr = endpoint.to_owned();
    let transport = |source| ConnectError::Transport {
        endpoint: endpoint.to_owned(),
        source,
    };
    tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(transport)?
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let (connector, addr) = (connector.clone(), addr.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                // The name is not checked (the pin is); it only fills SNI.
                let name = rustls_pki_types::ServerName::try_from("peer.lienthong.invalid")
                    .map_err(std::io::Error::other)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .map_err(transport)
}
