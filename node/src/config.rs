//! The node's configuration: a TOML file, parsed into a value and validated
//! completely (every problem reported at once, each with its fix) before
//! anything is opened or bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The file as written (paths relative to the file's directory).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: RawNode,
    store: RawStore,
    keys: RawKeys,
    api: RawApi,
    #[serde(default)]
    checkpoint: RawCheckpoint,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    cli: RawCli,
    federation: Option<RawFederation>,
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    listen: String,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    manifest: PathBuf,
    #[serde(default = "default_manifest_poll_ms")]
    manifest_poll_ms: u64,
}

fn default_manifest_poll_ms() -> u64 {
    10_000
}

/// Where and how this node talks to other members.
#[derive(Debug, Clone)]
pub struct FederationConfig {
    /// Address of the Federation API (peers only, pinned mTLS).
    pub listen: SocketAddr,
    /// This member's TLS certificate, whose key the manifest pins.
    pub tls_cert: PathBuf,
    /// Its private key (0600).
    pub tls_key: PathBuf,
    /// The signed manifest file (chain of versions). The node rewrites it
    /// when it adopts a newer version from a peer, and re-reads it when an
    /// operator replaces it.
    pub manifest: PathBuf,
    /// How often to ask peers (and the file) for newer manifest versions.
    pub manifest_poll: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    member: String,
    name: String,
    federation: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    dir: PathBuf,
    #[serde(default = "default_cache_mb")]
    cache_mb: u64,
    /// Where `lienthong backup` writes (default "backups" beside the
    /// config file).
    #[serde(default)]
    backup_dir: Option<PathBuf>,
}

fn default_cache_mb() -> u64 {
    lienthong_store::DEFAULT_CACHE_BYTES / (1024 * 1024)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    signing_key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: String,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    client_crl: Option<PathBuf>,
    #[serde(default)]
    plaintext_dev: bool,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
}

fn default_max_in_flight() -> usize {
    4096
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckpoint {
    #[serde(default = "default_interval_ms")]
    interval_ms: u64,
    #[serde(default = "default_cosign_interval_ms")]
    cosign_interval_ms: u64,
}

impl Default for RawCheckpoint {
    fn default() -> Self {
        Self {
            interval_ms: default_interval_ms(),
            cosign_interval_ms: default_cosign_interval_ms(),
        }
    }
}

fn default_interval_ms() -> u64 {
    500
}

fn default_cosign_interval_ms() -> u64 {
    1000
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    format: LogFormat,
    level: Option<String>,
}

/// How logs are written.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCli {
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    server_ca: Option<PathBuf>,
    server_name: Option<String>,
}

/// How the local API is secured.
#[derive(Debug, Clone)]
pub enum ApiSecurity {
    /// TLS with client certificates signed by `client_ca`.
    Tls {
        /// Server certificate chain (PEM).
        cert: PathBuf,
        /// Server private key (PEM).
        key: PathBuf,
        /// CA that signs local clients' certificates (PEM).
        client_ca: PathBuf,
        /// Revoked client certificates (PEM CRL signed by `client_ca`),
        /// re-read while the node runs.
        client_crl: Option<PathBuf>,
    },
    /// No TLS, no authentication: development only, loopback only.
    PlaintextDev,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Member code.
    pub member: String,
    /// Province name.
    pub name: String,
    /// Federation name, first part of the checkpoint origin.
    pub federation: String,
    /// Store directory.
    pub store_dir: PathBuf,
    /// Store page cache, bytes.
    pub store_cache_bytes: u64,
    /// Where online backups go.
    pub backup_dir: PathBuf,
    /// Signing key file.
    pub signing_key: PathBuf,
    /// Local API address.
    pub listen: SocketAddr,
    /// Local API security.
    pub security: ApiSecurity,
    /// Concurrent submissions accepted before callers wait.
    pub max_in_flight: usize,
    /// Checkpoint interval.
    pub checkpoint_interval: Duration,
    /// Least time between two rounds of asking the members to cosign the
    /// newest checkpoint (zero: a round for every checkpoint).
    pub cosign_interval: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (tracing-subscriber syntax).
    pub log_level: String,
    /// Client settings for the CLI.
    pub cli: CliConfig,
    /// Peering, if this node is part of a federation.
    pub peering: Option<FederationConfig>,
    /// Where Prometheus scrapes `/metrics` (plain HTTP), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

/// What the CLI uses to reach this node's API.
#[derive(Debug, Clone)]
pub struct CliConfig {
    /// Client certificate.
    pub client_cert: Option<PathBuf>,
    /// Client key.
    pub client_key: Option<PathBuf>,
    /// CA of the API server certificate.
    pub server_ca: Option<PathBuf>,
    /// Name in the server certificate.
    pub server_name: String,
}

impl Config {
    /// Reads and parses `keys.signing_key`.
    pub fn load_signing_key(&self) -> anyhow::Result<ed25519_dalek::SigningKey> {
        use anyhow::Context as _;
        let pem = std::fs::read_to_string(&self.signing_key)
            .with_context(|| format!("reading {}", self.signing_key.display()))?;
        lienthong_core::keys::signing_key_from_pem(&pem)
            .with_context(|| format!("keys.signing_key {}", self.signing_key.display()))
    }

    /// A signing key in the directory of `keys.signing_key` whose public
    /// key is `wanted` (the one a new manifest version lists for this
    /// member after a rotation, made there by `lienthong key new`). Only
    /// files readable by this user alone (0600) are considered.
    pub fn find_signing_key(
        &self,
        wanted: &ed25519_dalek::VerifyingKey,
    ) -> Option<(PathBuf, ed25519_dalek::SigningKey)> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = self.signing_key.parent()?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pem"))
            .collect();
        files.sort();
        files.into_iter().find_map(|p| {
            let meta = std::fs::metadata(&p).ok()?;
            if meta.permissions().mode() & 0o077 != 0 {
                return None;
            }
            let key =
                lienthong_core::keys::signing_key_from_pem(&std::fs::read_to_string(&p).ok()?)
                    .ok()?;
            (key.verifying_key() == *wanted).then_some((p, key))
        })
    }

    /// The checkpoint origin and signed-note key name of this member's feed.
    pub fn origin(&self) -> String {
        format!("{}/{}", self.federation, self.member)
    }
}

/// Every problem with a configuration file.
#[derive(Debug, thiserror::Error)]
#[error("{} has {} problem(s):\n{}", path.display(), problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// One line per problem, each saying how to fix it.
    pub problems: Vec<String>,
}

/// Reads and validates a configuration file. `check_files` also checks that
/// key and certificate files exist with safe permissions (the server needs
/// that; some CLI commands do not).
pub fn load(path: &Path, check_files: bool) -> Result<Config, ConfigError> {
    let fail = |problems: Vec<String>| ConfigError {
        path: path.to_path_buf(),
        problems,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(vec![format!(
            "cannot read the file: {e}; create one with `lienthong init`"
        )])
    })?;
    let raw: RawConfig = toml::from_str(&text)
        .map_err(|e| fail(vec![e.to_string().trim_end().replace('\n', "\n    ")]))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let mut problems = Vec::new();

    let n = &raw.node;
    if !lienthong_core::provinces::is_province(&n.member) {
        problems.push(format!("node.member = {:?} is not a province code: use the two-digit code after the 2025 merger, e.g. \"01\" for Hà Nội", n.member));
    }
    if n.name.trim().is_empty() {
        problems.push("node.name is empty: set the province's name, e.g. \"Hà Nội\"".into());
    }
    let origin = format!("{}/{}", n.federation, n.member);
    if n.federation.is_empty()
        || !lienthong_log::is_valid_key_name(&origin)
        || n.federation.ends_with('/')
    {
        problems.push(format!(
            "node.federation = {:?} is not usable as a checkpoint origin: use a name without spaces or '+', e.g. \"lienthong.example/bac-bo-11\"",
            n.federation
        ));
    }

    let listen = match raw.api.listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(format!("api.listen = {:?} is not an address with a port, e.g. \"0.0.0.0:7401\" or \"[::1]:7401\"", raw.api.listen));
            None
        }
    };
    let security = if raw.api.plaintext_dev {
        if listen.is_some_and(|a| !a.ip().is_loopback()) {
            problems.push(format!(
                "api.plaintext_dev = true is only allowed on a loopback address, but api.listen is {}: use 127.0.0.1 or [::1], or turn plaintext_dev off and configure TLS",
                raw.api.listen
            ));
        }
        if raw.api.tls_cert.is_some()
            || raw.api.tls_key.is_some()
            || raw.api.client_ca.is_some()
            || raw.api.client_crl.is_some()
        {
            problems.push("api.plaintext_dev = true together with api.tls_*/api.client_ca: choose one (remove plaintext_dev for production)".into());
        }
        ApiSecurity::PlaintextDev
    } else {
        let mut need = |name: &str, v: &Option<PathBuf>| match v {
            Some(p) => resolve(p),
            None => {
                problems.push(format!("api.{name} is missing: the local API is served over TLS; set it (see `lienthong init`), or for development on loopback only set api.plaintext_dev = true"));
                PathBuf::new()
            }
        };
        ApiSecurity::Tls {
            cert: need("tls_cert", &raw.api.tls_cert),
            key: need("tls_key", &raw.api.tls_key),
            client_ca: need("client_ca", &raw.api.client_ca),
            client_crl: raw.api.client_crl.as_ref().map(|p| resolve(p)),
        }
    };
    if raw.api.max_in_flight == 0 || raw.api.max_in_flight > 1_000_000 {
        problems.push(format!(
            "api.max_in_flight = {} must be between 1 and 1000000",
            raw.api.max_in_flight
        ));
    }
    if !(10..=1000).contains(&raw.checkpoint.interval_ms) {
        problems.push(format!(
            "checkpoint.interval_ms = {} must be between 10 and 1000: a growing feed is checkpointed at least once per second",
            raw.checkpoint.interval_ms
        ));
    }
    if raw.checkpoint.cosign_interval_ms > 60_000 {
        problems.push(format!(
            "checkpoint.cosign_interval_ms = {} must be between 0 and 60000: members are asked to cosign the newest checkpoint at most this often (default {})",
            raw.checkpoint.cosign_interval_ms,
            default_cosign_interval_ms()
        ));
    }
    if !(4..=16_384).contains(&raw.store.cache_mb) {
        problems.push(format!(
            "store.cache_mb = {} is out of range: use 4 to 16384 (default {})",
            raw.store.cache_mb,
            default_cache_mb()
        ));
    }
    let log_level = raw.log.level.clone().unwrap_or_else(|| "info".into());
    let metrics_listen = raw
        .metrics
        .as_ref()
        .and_then(|m| match m.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                problems.push(format!(
                    "metrics.listen = {:?} is not an address with a port, e.g. \"127.0.0.1:9464\"",
                    m.listen
                ));
                None
            }
        });
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        problems.push(format!("log.level = {log_level:?} is not a filter: use e.g. \"info\" or \"lienthong=debug,info\""));
    }

    let signing_key = resolve(&raw.keys.signing_key);
    if check_files {
        check_secret(&mut problems, "keys.signing_key", &signing_key);
        if let ApiSecurity::Tls {
            cert,
            key,
            client_ca,
            client_crl,
        } = &security
            && !cert.as_os_str().is_empty()
        {
            check_readable(&mut problems, "api.tls_cert", cert);
            check_secret(&mut problems, "api.tls_key", key);
            check_readable(&mut problems, "api.client_ca", client_ca);
            if let Some(crl) = client_crl {
                check_readable(&mut problems, "api.client_crl", crl);
            }
        }
    }

    let federation = raw.federation.as_ref().map(|f| {
        let listen = f.listen.parse::<SocketAddr>().unwrap_or_else(|_| {
            problems.push(format!(
                "federation.listen = {:?} is not an address with a port, e.g. \"0.0.0.0:7501\"",
                f.listen
            ));
            SocketAddr::from(([127, 0, 0, 1], 0))
        });
        let fc = FederationConfig {
            listen,
            tls_cert: resolve(&f.tls_cert),
            tls_key: resolve(&f.tls_key),
            manifest: resolve(&f.manifest),
            manifest_poll: Duration::from_millis(f.manifest_poll_ms),
        };
        if !(100..=3_600_000).contains(&f.manifest_poll_ms) {
            problems.push(format!(
                "federation.manifest_poll_ms = {} is out of range: use 100 to 3600000 (default 10000)",
                f.manifest_poll_ms
            ));
        }
        if check_files {
            check_readable(&mut problems, "federation.tls_cert", &fc.tls_cert);
            check_secret(&mut problems, "federation.tls_key", &fc.tls_key);
            check_readable(&mut problems, "federation.manifest", &fc.manifest);
        }
        fc
    });
    if let (Some(f), Some(api)) = (&federation, listen)
        && f.listen == api
        && api.port() != 0
    {
        problems.push("federation.listen is the same address as api.listen: peers and local systems use different ports".into());
    }

    if !problems.is_empty() {
        return Err(fail(problems));
    }
    let cli = CliConfig {
        client_cert: raw.cli.client_cert.as_deref().map(resolve),
        client_key: raw.cli.client_key.as_deref().map(resolve),
        server_ca: raw.cli.server_ca.as_deref().map(resolve),
        server_name: raw.cli.server_name.unwrap_or_else(|| "localhost".into()),
    };
    Ok(Config {
        path: path.to_path_buf(),
        member: raw.node.member,
        name: raw.node.name,
        federation: raw.node.federation,
        store_dir: resolve(&raw.store.dir),
        store_cache_bytes: raw.store.cache_mb * 1024 * 1024,
        backup_dir: resolve(
            raw.store
                .backup_dir
                .as_deref()
                .unwrap_or(Path::new("backups")),
        ),
        signing_key,
        listen: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        security,
        max_in_flight: raw.api.max_in_flight,
        checkpoint_interval: Duration::from_millis(raw.checkpoint.interval_ms),
        cosign_interval: Duration::from_millis(raw.checkpoint.cosign_interval_ms),
        log_format: raw.log.format,
        log_level,
        cli,
        peering: federation,
        metrics_listen,
    })
}

fn check_readable(problems: &mut Vec<String>, field: &str, path: &Path) {
    if let Err(e) = std::fs::metadata(path) {
        problems.push(format!("{field}: cannot read {}: {e}", path.display()));
    }
}

/// A private key must exist and be readable by its owner only.
fn check_secret(problems: &mut Vec<String>, field: &str, path: &Path) {
    match std::fs::metadata(path) {
        Err(e) => problems.push(format!(
            "{field}: cannot read {}: {e}; create keys with `lienthong init`",
            path.display()
        )),
        Ok(m) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                problems.push(format!("{field}: {} has permissions {mode:04o}; a private key must be 0600: run `chmod 600 {}`", path.display(), path.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("lienthong.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            r#"
[node]
member = "99"
name = ""
federation = "has space"
[store]
dir = "store"
[keys]
signing_key = "missing.pem"
[api]
listen = "0.0.0.0:7401"
plaintext_dev = true
[checkpoint]
interval_ms = 5000
cosign_interval_ms = 60001
"#,
        );
        let e = load(&p, true).unwrap_err();
        let all = e.problems.join("\n");
        for needle in [
            "node.member",
            "node.name",
            "node.federation",
            "api.plaintext_dev",
            "checkpoint.interval_ms",
            "checkpoint.cosign_interval_ms",
            "keys.signing_key",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
        assert_eq!(e.problems.len(), 7, "{all}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "[node]\nmember=\"01\"\nname=\"x\"\nfederation=\"f\"\ncolour=\"red\"\n[store]\ndir=\"s\"\n[keys]\nsigning_key=\"k\"\n[api]\nlisten=\"127.0.0.1:1\"\nplaintext_dev=true\n",
        );
        let e = load(&p, false).unwrap_err();
        assert!(e.problems[0].contains("colour"), "{e}");
    }

    #[test]
    fn the_cache_defaults_to_the_store_default_and_is_read_in_mib() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("k.pem"), "x").unwrap();
        let base = "[node]\nmember=\"01\"\nname=\"x\"\nfederation=\"f\"\n[keys]\nsigning_key=\"k.pem\"\n[api]\nlisten=\"127.0.0.1:1\"\nplaintext_dev=true\n[store]\ndir=\"s\"\n";
        let c = load(&write(d.path(), base), false).unwrap();
        assert_eq!(c.store_cache_bytes, lienthong_store::DEFAULT_CACHE_BYTES);
        let c = load(&write(d.path(), &format!("{base}cache_mb = 48\n")), false).unwrap();
        assert_eq!(c.store_cache_bytes, 48 << 20);
    }

    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("k.pem"), "x").unwrap();
        std::fs::set_permissions(
            d.path().join("k.pem"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let p = write(
            d.path(),
            "[node]\nmember=\"01\"\nname=\"Hà Nội\"\nfederation=\"f\"\n[store]\ndir=\"s\"\n[keys]\nsigning_key=\"k.pem\"\n[api]\nlisten=\"127.0.0.1:1\"\nplaintext_dev=true\n",
        );
        let e = load(&p, true).unwrap_err();
        assert!(e.problems[0].contains("chmod 600"), "{e}");
        std::fs::set_permissions(
            d.path().join("k.pem"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert!(load(&p, true).is_ok());
    }
}
