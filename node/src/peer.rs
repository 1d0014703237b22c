//! The node's side of the federation: the `Federation` service other
//! members subscribe to (author side), and one subscriber per member whose
//! entries this node may receive (receiver side). Both run over mutual TLS
//! pinned by the manifest.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use lienthong_core::delivery::{AuthorKey, Delivery, verify_delivery};
use lienthong_core::manifest::VerifiedManifest;
use lienthong_core::proto::{
    self as pb, federation_client::FederationClient, federation_server::Federation,
};
use lienthong_federation::tls::{PinSet, SpkiPin, TlsIdentity};
use lienthong_store::{Store, Writer};
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Federation settings that passed every check.
pub struct Peering {
    pub me: String,
    pub manifest: Arc<VerifiedManifest>,
    pub identity: TlsIdentity,
    pub listen: SocketAddr,
}

impl Peering {
    /// Pins of every current member.
    pub fn pins(&self) -> PinSet {
        PinSet::new(
            self.manifest
                .manifest()
                .members
                .iter()
                .filter_map(|m| SpkiPin::from_hex(&m.tls_spki_sha256).map(|p| (m.code.clone(), p))),
        )
    }
}

/// Author side: serves this member's feed to the members in each entry's
/// audience.
pub struct FederationService {
    pub store: Store,
    pub pins: PinSet,
    pub stopping: watch::Receiver<bool>,
}

type DeliveryStream = Pin<Box<dyn Stream<Item = Result<pb::Delivery, Status>> + Send>>;

#[tonic::async_trait]
impl Federation for FederationService {
    type SubscribeStream = DeliveryStream;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let certs = req
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("a member certificate is required"))?;
        let caller = certs
            .first()
            .and_then(|c| self.pins.member_of(c))
            .map(str::to_owned)
            .ok_or_else(|| {
                Status::permission_denied(
                    "this certificate is not pinned for any member in the manifest",
                )
            })?;
        let mut index = req.get_ref().from_index;
        tracing::info!(peer = %caller, from = index, "peer subscribed");
        let store = self.store.clone();
        let mut stopping = self.stopping.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::Delivery, Status>>(256);
        tokio::spawn(async move {
            let mut durable = store.subscribe();
            loop {
                let size = store.latest_checkpoint().map_or(0, |c| c.size);
                if index >= size {
                    tokio::select! {
                        changed = durable.changed() => if changed.is_err() { return },
                        () = tx.closed() => return,
                        _ = stopping.changed() => return,
                    }
                    continue;
                }
                let (s, who, from) = (store.clone(), caller.clone(), index);
                let batch =
                    tokio::task::spawn_blocking(move || collect(&s, &who, from, size)).await;
                let Ok(Ok((items, next))) = batch else {
                    let _ = tx
                        .send(Err(Status::internal("reading the feed failed")))
                        .await;
                    return;
                };
                for d in items {
                    if tx.send(Ok(d)).await.is_err() {
                        return;
                    }
                }
                index = next;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Entries in `[from, min(size, from+256))` addressed to `caller`, each with
/// its proof under the checkpoint of `size`.
fn collect(
    store: &Store,
    caller: &str,
    from: u64,
    size: u64,
) -> Result<(Vec<pb::Delivery>, u64), lienthong_store::StoreError> {
    let end = size.min(from + 256);
    let note = store
        .latest_checkpoint()
        .filter(|c| c.size == size)
        .map(|c| c.note.clone());
    let Some(note) = note else {
        return Ok((Vec::new(), from));
    };
    let mut out = Vec::new();
    for i in from..end {
        let Some(e) = store.get_by_own_index(i)? else {
            break;
        };
        if e.body.audience.iter().any(|m| m == caller) {
            let (_, proof) = store.inclusion_proof(i, size)?;
            let withheld: &[String] = e
                .openings
                .withheld
                .iter()
                .find(|w| w.recipient == caller)
                .map_or(&[], |w| &w.fields);
            let openings = lienthong_core::redaction::allowed(&e.openings.openings, withheld);
            out.push(pb::Delivery {
                envelope: e.envelope,
                openings,
                checkpoint: note.clone(),
                inclusion_proof: proof.into_iter().map(|h| h.0.to_vec()).collect(),
            });
        }
    }
    Ok((out, end))
}

/// Accepts TLS connections with the pinned verifier, handshaking off the
/// accept loop; refused handshakes are logged.
pub fn pinned_incoming(
    listener: tokio::net::TcpListener,
    config: rustls::ServerConfig,
) -> tokio_stream::wrappers::ReceiverStream<
    Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::io::Error>,
> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, addr)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::warn!(%addr, error = %e, "peer TLS handshake refused"),
                    Err(_) => tracing::warn!(%addr, "peer TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A gRPC channel to `endpoint`, accepting only the server key `pin`.
async fn connect_pinned(
    endpoint: &str,
    identity: &TlsIdentity,
    pin: SpkiPin,
) -> Result<tonic::transport::Channel> {
    let config = Arc::new(lienthong_federation::tls::client_config(identity, pin)?);
    let connector = tokio_rustls::TlsConnector::from(config);
    let addr = endpoint.to_owned();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let (connector, addr) = (connector.clone(), addr.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                let name = rustls_pki_types::ServerName::try_from("peer.lienthong.invalid")
                    .map_err(std::io::Error::other)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await?;
    Ok(channel)
}

/// Receiver side: keeps a subscription to `author` open, verifying every
/// delivery before storing it; reconnects with backoff until stopped.
pub async fn subscriber(
    peering: Arc<Peering>,
    author: String,
    store: Store,
    writer: Arc<Writer>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = tokio::select! {
            r = subscribe_once(&peering, &author, &store, &writer) => r,
            _ = stopping.changed() => return,
        };
        match result {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::debug!(peer = %author, error = %format!("{e:#}"), "subscription ended; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stopping.changed() => return,
        }
    }
}

async fn subscribe_once(
    peering: &Peering,
    author: &str,
    store: &Store,
    writer: &Writer,
) -> Result<()> {
    let m = peering.manifest.manifest();
    let member = m
        .members
        .iter()
        .find(|x| x.code == author)
        .context("author left the manifest")?;
    let pin = SpkiPin::from_hex(&member.tls_spki_sha256).context("bad pin in manifest")?;
    let key = *peering
        .manifest
        .member_key(author)
        .context("no key for author")?;
    let author_key = AuthorKey {
        member: author.to_owned(),
        origin: format!("{}/{author}", m.federation),
        key,
    };
    let channel = connect_pinned(&member.endpoint, &peering.identity, pin).await?;
    let mut client = FederationClient::new(channel);
    let mut next = store.replication_cursor(author)?;
    let mut stream = client
        .subscribe(pb::SubscribeRequest { from_index: next })
        .await?
        .into_inner();
    // Verified entries are queued to the writer in order without waiting
    // for each fsync, so many share one group commit; at most WINDOW wait.
    const WINDOW: usize = 1024;
    type Pending = tokio::sync::oneshot::Receiver<
        Result<lienthong_store::Appended, lienthong_store::StoreError>,
    >;
    let mut in_flight: std::collections::VecDeque<(u64, Pending)> =
        std::collections::VecDeque::new();
    while let Some(d) = stream.message().await? {
        let proof: Vec<lienthong_log::Hash> = d
            .inclusion_proof
            .iter()
            .filter_map(|h| h.as_slice().try_into().ok().map(lienthong_log::Hash))
            .collect();
        match verify_delivery(
            Delivery {
                envelope: &d.envelope,
                checkpoint: d.checkpoint.as_bytes(),
                inclusion_proof: &proof,
            },
            &author_key,
            &peering.me,
            next,
        ) {
            Ok(accepted) => {
                let index = accepted.entry().index();
                // Openings are unsigned: keep them only if they match the
                // signed commitments.
                let openings = match &accepted.entry().body().payload {
                    Some(pb::entry_body::Payload::Alert(a)) => {
                        match lienthong_core::redaction::check_openings(a, &d.openings) {
                            Ok(()) => d.openings.clone(),
                            Err(e) => {
                                tracing::warn!(peer = %author, index, error = %e, "refused the openings of an entry");
                                Vec::new()
                            }
                        }
                    }
                    _ => Vec::new(),
                };
                in_flight.push_back((index, writer.receive_queued(accepted, openings)?));
                next = index + 1;
            }
            Err(reason) => tracing::warn!(peer = %author, %reason, "refused a delivery"),
        }
        while in_flight.len() > WINDOW || in_flight.front().is_some_and(|(_, rx)| !rx.is_empty()) {
            let Some((index, rx)) = in_flight.pop_front() else {
                break;
            };
            let stored = rx
                .await
                .map_err(|_| anyhow::anyhow!("the writer stopped"))??;
            tracing::debug!(peer = %author, index, cursor = stored.cursor, duplicate = stored.duplicate, "received and verified");
        }
    }
    for (_, rx) in in_flight {
        rx.await
            .map_err(|_| anyhow::anyhow!("the writer stopped"))??;
    }
    Ok(())
}
