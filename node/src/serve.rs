//! `lienthong run`: validate everything, open the store, then serve.
//!
//! Order matters: configuration, keys, certificates and the store's
//! integrity are all checked before any port is bound, so a broken node
//! never half-starts.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use lienthong_core::proto::{
    admin_server::AdminServer, alerts_server::AlertsServer, audit_server::AuditServer,
    cases_server::CasesServer,
};
use lienthong_log::NoteSigner;
use lienthong_store::{FeedSigner, OpenOptions, Store, Writer, WriterConfig};
use tokio::sync::Semaphore;
use tonic::transport::Server;

use crate::api::{AlertsService, AuditService};
use crate::config::{ApiSecurity, Config};
use crate::manifest_file::ManifestFile;
use crate::peer::{FederationService, Peering};
use lienthong_core::proto::federation_server::FederationServer;

/// Largest request message accepted, bytes.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// Everything loaded and checked, nothing bound yet.
pub struct Prepared {
    config: Config,
    store: Store,
    writer: Writer,
    metrics: crate::metrics::Metrics,
    tls: Option<rustls::ServerConfig>,
    peering: Option<Arc<Peering>>,
}

/// Reads the manifest and this member's peer identity, and checks that the
/// manifest in force lists this member with this node's keys.
fn prepare_peering(
    config: &Config,
    key: &ed25519_dalek::SigningKey,
) -> Result<Option<Arc<Peering>>> {
    let Some(f) = &config.peering else {
        return Ok(None);
    };
    // Re-read when `lienthong tls renew` replaces the files.
    let identity = lienthong_federation::reload::ReloadingIdentity::open(
        "federation.tls_cert",
        f.tls_cert.clone(),
        f.tls_key.clone(),
    )
    .with_context(|| {
        format!(
            "federation.tls_cert {} with federation.tls_key {}",
            f.tls_cert.display(),
            f.tls_key.display()
        )
    })?;
    let pin = identity.identity().pin().context("federation.tls_cert")?;
    let chain = ManifestFile::read(&f.manifest)?
        .verify()
        .context("federation.manifest")?;
    let manifest = chain.current();
    let m = manifest.manifest();
    let mut problems = Vec::new();
    if m.federation != config.federation {
        problems.push(format!(
            "the manifest is for federation {:?} but node.federation is {:?}",
            m.federation, config.federation
        ));
    }
    match m.members.iter().find(|x| x.code == config.member) {
        None => problems.push(format!("member {} is not in manifest version {}: ask the members to add it (`lienthong federation member`)", config.member, manifest.version())),
        Some(me) => {
            if manifest.member_key(&config.member) != Some(&key.verifying_key()) {
                problems.push(format!("manifest version {} lists another signing key for {}: keys.signing_key does not match (a key rotation takes effect through a manifest version listing the new key; then start with the new key)", manifest.version(), config.member));
            }
            if me.tls_spki_sha256 != pin.to_hex() {
                problems.push(format!("the manifest pins TLS key {} for {} but federation.tls_cert has {}", me.tls_spki_sha256, config.member, pin.to_hex()));
            }
        }
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "{} does not match this node:\n  - {}",
            f.manifest.display(),
            problems.join("\n  - ")
        );
    }
    Ok(Some(Peering::new(
        config.member.clone(),
        chain,
        f.manifest.clone(),
        Arc::new(identity),
        f.listen,
        f.manifest_poll,
        key.clone(),
    )))
}

/// The key to sign with: the configured one, unless the manifest in force
/// lists another key for this member and a key file beside the configured
/// one holds it (a rotation done while the node ran, or prepared for this
/// start); then that one, with a warning to update the config.
fn rotated_key(
    config: &Config,
    key: ed25519_dalek::SigningKey,
) -> Result<ed25519_dalek::SigningKey> {
    let Some(f) = &config.peering else {
        return Ok(key);
    };
    let Ok(file) = ManifestFile::read(&f.manifest) else {
        return Ok(key);
    };
    let Ok(chain) = file.verify() else {
        return Ok(key);
    };
    match chain.current().member_key(&config.member) {
        Some(listed) if *listed != key.verifying_key() => match config.find_signing_key(listed) {
            Some((path, found)) => {
                tracing::warn!(key = %path.display(), configured = %config.signing_key.display(), "the manifest in force lists a newer key for this member: signing with it; set keys.signing_key to it");
                Ok(found)
            }
            None => Ok(key),
        },
        _ => Ok(key),
    }
}

/// How to open a store of this node at `dir`: after a key rotation the
/// newest checkpoint on disk was signed with an earlier key of this member,
/// so every key the manifest chain lists for it is accepted.
pub fn open_options(config: &Config, dir: &Path) -> Result<OpenOptions> {
    let key = config.load_signing_key()?;
    let mut verifying_keys = Vec::new();
    if let Some(f) = &config.peering {
        verifying_keys = ManifestFile::read(&f.manifest)?
            .verify()
            .context("federation.manifest")?
            .keys_of(&config.member);
    }
    if verifying_keys.is_empty() {
        verifying_keys.push(key.verifying_key());
    }
    Ok(OpenOptions {
        dir: dir.to_path_buf(),
        member: config.member.clone(),
        origin: config.origin(),
        verifying_keys,
        cache_bytes: config.store_cache_bytes,
    })
}

/// Loads keys and certificates and opens the store (with its integrity
/// check). Fails with every reason before anything listens.
pub fn prepare(config: Config) -> Result<Prepared> {
    let key = rotated_key(&config, config.load_signing_key()?)?;
    let origin = config.origin();
    let peering = prepare_peering(&config, &key)?;
    let tls = match &config.security {
        ApiSecurity::PlaintextDev => {
            tracing::warn!(listen = %config.listen, "local API without TLS or authentication (api.plaintext_dev): for development only");
            None
        }
        ApiSecurity::Tls {
            cert,
            key,
            client_ca,
            client_crl,
        } => Some(crate::api_tls::server_config(
            cert,
            key,
            client_ca,
            client_crl.as_deref(),
        )?),
    };
    let store = Store::open(&open_options(&config, &config.store_dir)?)
        .with_context(|| format!("opening the store {}", config.store_dir.display()))?;
    let note_signer = NoteSigner::new(&origin, key.clone()).context("checkpoint signer")?;
    let metrics = crate::metrics::Metrics::default();
    let writer = Writer::start(
        store.clone(),
        FeedSigner {
            author: config.member.clone(),
            key,
            note_signer,
        },
        WriterConfig {
            checkpoint_interval: config.checkpoint_interval,
            on_commit: Some(metrics.commit_observer()),
            ..WriterConfig::default()
        },
    )?;
    Ok(Prepared {
        config,
        store,
        writer,
        metrics,
        tls,
        peering,
    })
}

/// Binds and serves until SIGINT or SIGTERM, then finishes queued writes,
/// issues a last checkpoint and exits.
pub async fn serve(p: Prepared, ready_file: Option<&Path>) -> Result<()> {
    let Prepared {
        config,
        store,
        writer,
        metrics,
        tls,
        peering,
    } = p;
    let writer = Arc::new(writer);
    if let Some(p) = &peering {
        p.enable_rotation(crate::peer::Rotation {
            config: config.clone(),
            writer: writer.clone(),
        });
    }

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AlertsServer<AlertsService>>()
        .await;
    health_reporter
        .set_serving::<AuditServer<AuditService>>()
        .await;
    health_reporter
        .set_serving::<CasesServer<crate::cases::CasesService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lienthong_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lienthong_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
    let coordination = crate::cases::Coordination {
        store: store.clone(),
        writer: writer.clone(),
        in_flight: in_flight.clone(),
        peering: peering.clone(),
        stopping: stopping.clone(),
        new_request: Arc::default(),
        retracting: Arc::default(),
    };
    let alerts = AlertsServer::new(AlertsService {
        metrics: metrics.clone(),
        store: store.clone(),
        writer: writer.clone(),
        in_flight,
        stopping: stopping.clone(),
        peering: peering.clone(),
        coordination: coordination.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE);
    let cases = CasesServer::new(crate::cases::CasesService {
        c: coordination.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE);
    let admin = AdminServer::new(crate::backup::AdminService {
        store: store.clone(),
        backup_dir: config.backup_dir.clone(),
        open: open_options(&config, &config.store_dir)?,
        running: Arc::default(),
    });
    let witness = peering
        .as_ref()
        .map(|p| crate::witness::Witness::new(p.clone(), store.clone()));
    let audit = AuditServer::new(AuditService {
        store: store.clone(),
        peering: peering.clone(),
        witness: witness.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding api.listen {}", config.listen))?;
    let mut peer_tasks = Vec::new();
    peer_tasks.push(tokio::spawn(crate::cases::escalate(coordination)));
    if let Some(addr) = config.metrics_listen {
        let src = Arc::new(crate::metrics::Sources {
            metrics,
            store: store.clone(),
            peering: peering.clone(),
        });
        let stop = stopping.clone();
        // Bind now, so a taken port fails the start like the others.
        let task = crate::metrics::serve(crate::metrics::bind(addr).await?, src, stop);
        peer_tasks.push(tokio::spawn(async move {
            if let Err(e) = task.await {
                tracing::error!(error = %format!("{e:#}"), "metrics endpoint stopped");
            }
        }));
    }
    if let (Some(p), Some(witness)) = (&peering, &witness) {
        let fed_listener = tokio::net::TcpListener::bind(p.listen)
            .await
            .with_context(|| format!("binding federation.listen {}", p.listen))?;
        let tls =
            lienthong_federation::tls::server_config_with(p.identity.clone(), p.pins.clone())?;
        let service = FederationServer::new(FederationService {
            store: store.clone(),
            peering: p.clone(),
            witness: witness.clone(),
            stopping: stopping.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE);
        let mut stop = stopping.clone();
        let stopped = stopping.clone();
        let incoming = crate::peer::tls_incoming(fed_listener, tls, "federation");
        peer_tasks.push(tokio::spawn(async move {
            let served = Server::builder()
                .layer(crate::limits::layer())
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.changed().await;
                });
            let r = crate::stopping::serve_until_stopped(served, stopped, "federation").await;
            if let Err(e) = r {
                tracing::error!(error = %e, "federation API stopped");
            }
        }));
        peer_tasks.push(tokio::spawn(crate::peer::supervise_subscribers(
            witness.clone(),
            writer.clone(),
            stopping.clone(),
        )));
        peer_tasks.push(tokio::spawn(crate::witness::cosigner(
            witness.clone(),
            config.cosign_interval,
            stopping.clone(),
        )));
        peer_tasks.push(tokio::spawn(crate::witness::gossip(
            witness.clone(),
            stopping.clone(),
        )));
        peer_tasks.push(tokio::spawn(crate::peer::manifest_sync(
            p.clone(),
            stopping.clone(),
        )));
        let chain = p.chain();
        tracing::info!(federation = %p.listen, version = chain.current().version(), peers = chain.current().manifest().members.len() - 1, "peering");
    }
    let addr = listener.local_addr()?;
    let mut builder = Server::builder().layer(crate::limits::layer());
    let router = builder
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(alerts)
        .add_service(cases)
        .add_service(admin)
        .add_service(audit);

    tracing::info!(member = %config.member, name = %config.name, origin = %config.origin(), %addr, tls = !matches!(config.security, ApiSecurity::PlaintextDev), feed_size = store.durable().feed_size, "serving");
    if let Some(f) = ready_file {
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, addr.to_string())?;
        std::fs::rename(&tmp, f)?;
    }
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    use crate::stopping::serve_until_stopped as until;
    match tls {
        Some(cfg) => {
            let incoming = crate::peer::tls_incoming(listener, cfg, "api");
            let served = router.serve_with_incoming_shutdown(incoming, shutdown);
            until(served, stopping.clone(), "api").await
        }
        None => {
            // Small request/response pairs: without TCP_NODELAY, Nagle's
            // algorithm and delayed ACKs add ~40 ms to every answer.
            let incoming = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                |s| {
                    s.inspect(|s| {
                        let _ = s.set_nodelay(true);
                    })
                },
            );
            let served = router.serve_with_incoming_shutdown(incoming, shutdown);
            until(served, stopping.clone(), "api").await
        }
    }
    .context("serving the API")?;

    tracing::info!("stopping: finishing queued writes and a last checkpoint");
    for t in peer_tasks {
        let _ = t.await;
    }
    health_reporter
        .set_not_serving::<AlertsServer<AlertsService>>()
        .await;
    match Arc::try_unwrap(writer) {
        Ok(w) => tokio::task::spawn_blocking(move || w.shutdown()).await?,
        // Calls still open past the grace hold it: it finishes the queued
        // writes and the last checkpoint when they are dropped, as this
        // process ends.
        Err(_) => tracing::info!("connections closed by force still hold the writer"),
    }
    tracing::info!(
        feed_size = store.durable().feed_size,
        checkpoint = store.latest_checkpoint().map(|c| c.size),
        "stopped"
    );
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
