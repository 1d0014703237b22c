//! The local API is authenticated by default; bad config is refused before
//! any port is bound.

use std::net::TcpStream;

use lienthong_proto::v1 as pb;
use lienthong_tests::{Node, free_port, lienthong, sample_alert};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Connects (TLS if given) and submits one alert; returns its feed index.
async fn submit_via(
    url: String,
    tls: Option<ClientTlsConfig>,
    reference: &str,
) -> anyhow::Result<u64> {
    let mut endpoint = Endpoint::from_shared(url)?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    let r = pb::alerts_client::AlertsClient::new(endpoint.connect().await?)
        .submit(pb::SubmitAlertRequest {
            alert: Some(sample_alert(reference)),
        })
        .await?;
    Ok(r.into_inner().index)
}

/// TLS as the client `name` of the node in `dir`, trusting `ca`.
fn as_client(
    ca: &Certificate,
    dir: &std::path::Path,
    name: &str,
) -> anyhow::Result<ClientTlsConfig> {
    let identity = Identity::from_pem(
        std::fs::read(dir.join(format!("clients/{name}-cert.pem")))?,
        std::fs::read(dir.join(format!("clients/{name}-key.pem")))?,
    );
    Ok(ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .identity(identity)
        .domain_name("localhost"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_clients_without_a_certificate_from_its_ca() -> anyhow::Result<()> {
    let mut node = Node::init("04", "Cao Bằng")?;
    node.start()?;
    let ca = Certificate::from_pem(std::fs::read(node.path().join("tls/ca-cert.pem"))?);
    let url = format!("https://{}", node.addr());

    let no_cert = ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .domain_name("localhost");
    assert!(
        submit_via(url.clone(), Some(no_cert), "x").await.is_err(),
        "a client without certificate was served"
    );

    let other = Node::init("04", "Cao Bằng")?;
    let foreign = as_client(&ca, &other.path(), "admin")?;
    assert!(
        submit_via(url.clone(), Some(foreign), "x").await.is_err(),
        "a client certificate from another CA was accepted"
    );

    assert!(
        submit_via(format!("http://{}", node.addr()), None, "x")
            .await
            .is_err(),
        "plaintext was served"
    );

    // A certificate issued by `client add` works, and its key is private.
    let out = lienthong(&[
        "client",
        "add",
        "hotline-1800",
        "--config",
        &node.config_arg(),
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(node.path().join("clients/hotline-1800-key.pem"))?.permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);
    assert_eq!(
        submit_via(
            url.clone(),
            Some(as_client(&ca, &node.path(), "hotline-1800")?),
            "cb-1"
        )
        .await?,
        0
    );

    // A peer's certificate (pinned for the federation, not issued by this
    // node's CA) is no key to the local API.
    let peer = Identity::from_pem(
        std::fs::read(node.path().join("tls/peer-cert.pem"))?,
        std::fs::read(node.path().join("tls/peer-key.pem"))?,
    );
    let as_peer = ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .identity(peer)
        .domain_name("localhost");
    assert!(
        submit_via(url.clone(), Some(as_peer), "x").await.is_err(),
        "a member's peer certificate was accepted on the local API"
    );

    // Revoked while the node runs: refused on new connections within
    // seconds; the other clients keep working.
    let out = lienthong(&[
        "client",
        "revoke",
        "hotline-1800",
        "--config",
        &node.config_arg(),
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = submit_via(
            url.clone(),
            Some(as_client(&ca, &node.path(), "hotline-1800")?),
            "cb-2",
        )
        .await;
        // Refused once the node has the new list (an error before that
        // would be something else).
        if r.is_err() && node.log().contains("reloaded the client revocation list") {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "a revoked certificate is still accepted (last: {r:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(node.log().contains("reloaded the client revocation list"));
    submit_via(url, Some(as_client(&ca, &node.path(), "admin")?), "cb-3").await?;
    let again = lienthong(&[
        "client",
        "revoke",
        "hotline-1800",
        "--config",
        &node.config_arg(),
    ])?;
    assert!(String::from_utf8_lossy(&again.stderr).contains("already revoked"));
    Ok(())
}

#[test]
fn init_writes_private_keys_with_0600() -> anyhow::Result<()> {
    let node = Node::init("25", "Phú Thọ")?;
    for k in [
        "keys/signing-key.pem",
        "tls/ca-key.pem",
        "tls/api-key.pem",
        "clients/admin-key.pem",
    ] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(node.path().join(k))?.permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{k}");
    }
    // init never overwrites.
    let again = lienthong(&[
        "init",
        "--member",
        "25",
        "--name",
        "x",
        "--dir",
        node.path().to_str().unwrap_or_default(),
    ])?;
    assert!(!again.status.success());
    Ok(())
}

/// Every problem in the config is reported at once, and nothing listens.
#[test]
fn bad_config_is_reported_whole_before_binding() -> anyhow::Result<()> {
    let node = Node::init("33", "Hưng Yên")?;
    let port = free_port();
    let cfg = node.config();
    let text = std::fs::read_to_string(&cfg)?
        .replace("member = \"33\"", "member = \"3\"")
        .replace(
            &format!("listen = \"127.0.0.1:{}\"", node.port),
            &format!("listen = \"0.0.0.0:{port}\"\nplaintext_dev = true"),
        )
        .replace("interval_ms = 50", "interval_ms = 0");
    std::fs::write(&cfg, text)?;
    std::fs::set_permissions(
        node.path().join("keys/signing-key.pem"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    let out = lienthong(&["run", "--config", &node.config_arg()])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "node.member",
        "api.plaintext_dev",
        "checkpoint.interval_ms",
        "chmod 600",
    ] {
        assert!(err.contains(needle), "{needle} missing in:\n{err}");
    }
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a port was bound"
    );
    Ok(())
}

#[test]
fn plaintext_dev_works_only_on_loopback() -> anyhow::Result<()> {
    let mut node = Node::init_with("42", "Hà Tĩnh", &["--plaintext-dev"])?;
    node.start()?;
    let rt = tokio::runtime::Runtime::new()?;
    assert_eq!(
        rt.block_on(submit_via(format!("http://{}", node.addr()), None, "ht-1"))?,
        0
    );
    Ok(())
}
