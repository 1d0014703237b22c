//! `lienthong`: one province's node of the Liên Thông federation.
//!
//! Thin glue: parse the command line, load and validate the config, and call
//! into the library crates. See README.md for the architecture.

mod api;
mod api_tls;
mod backup;
mod cases;
mod client;
mod config;
mod coord_cli;
mod doctor;
mod export;
mod init;
mod limits;
mod manifest_file;
mod metrics;
mod peer;
mod pki;
mod renew;
mod serve;
mod status;
mod stopping;
mod witness;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use lienthong_core::proto as pb;

#[derive(Parser)]
#[command(name = "lienthong", version, about = "Liên Thông: a province's node that signs, stores and shares violation alerts", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a node: keys, certificates and a commented config.
    #[command(
        after_help = "Example:\n  lienthong init --member 01 --name \"Hà Nội\" --dir /var/lib/lienthong"
    )]
    Init {
        /// Province code of this member (2025 codes), e.g. 01.
        #[arg(long)]
        member: String,
        /// Province name, e.g. "Hà Nội".
        #[arg(long)]
        name: String,
        /// Directory to create the node in.
        #[arg(long)]
        dir: PathBuf,
        /// Federation name: checkpoints are named "<federation>/<member>".
        #[arg(long, default_value = "lienthong.example/bac-bo-11")]
        federation: String,
        /// Address of the local API.
        #[arg(long, default_value = "127.0.0.1:7401")]
        listen: String,
        /// Extra DNS names or IP addresses for the API certificate (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// No TLS and no authentication on the API (development, loopback only).
        #[arg(long)]
        plaintext_dev: bool,
    },
    /// Run the node until SIGTERM or Ctrl-C.
    #[command(
        after_help = "Example:\n  lienthong run --config /var/lib/lienthong/lienthong.toml\n  lienthong run --config lienthong.toml --check   # validate and exit"
    )]
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Validate config, keys and store, then exit without serving.
        #[arg(long)]
        check: bool,
        /// Write the bound API address to this file once serving.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Certificates for local systems that call the API.
    #[command(subcommand)]
    Client(ClientCommand),
    /// This member's signing key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Submit, read and search alerts through the node's API.
    #[command(subcommand)]
    Alert(AlertCommand),
    /// Check the node's feed as an auditor would.
    #[command(subcommand)]
    Feed(FeedCommand),
    /// Witnessing, evidence and audit bundles.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The federation manifest: members, keys, pins and the agreement.
    #[command(subcommand)]
    Federation(FederationCommand),
    /// Cases handled by several provinces: open, invite, hand over, record
    /// inspections, seizures and decisions, close; show, list and watch.
    #[command(subcommand)]
    Case(coord_cli::CaseCommand),
    /// Assistance requests between provinces, with deadlines.
    #[command(subcommand)]
    Assist(coord_cli::AssistCommand),
    /// Coordinated inspections: plans, acceptances and reports.
    #[command(subcommand)]
    Inspection(coord_cli::InspectionCommand),
    /// Record the minutes of a coordination meeting (a Meeting in proto3
    /// JSON).
    Meeting {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, short = 'f')]
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Withdraw an entry this node wrote; every recipient is told and
    /// answers with a receipt. The entry stays provable in the log.
    Retract {
        #[command(flatten)]
        config: ConfigArg,
        /// Entry id (64 hex characters).
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Replace an alert this node wrote with a corrected one (an Alert in
    /// proto3 JSON, with a new reference).
    Correct {
        #[command(flatten)]
        config: ConfigArg,
        /// Entry id of the alert to replace (64 hex characters).
        id: String,
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// What was corrected.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// This node's TLS certificates: renew them before they expire.
    #[command(subcommand)]
    Tls(renew::TlsCommand),
    /// Check this node's config, keys, certificates, manifest, store and
    /// process; one line per check (OK, WARN, FAIL, SKIP) with its fix.
    /// Exits 1 if any check fails. Changes nothing (it creates and removes
    /// one probe file to see that the store directory is writable).
    #[command(
        after_help = "Example:\n  lienthong doctor --config /var/lib/lienthong/lienthong.toml"
    )]
    Doctor {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write a consistent copy of the running node's store under
    /// store.backup_dir (default "backups" beside the config), checked by
    /// opening it; the node keeps serving.
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        /// Added to the backup directory's name.
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long)]
        json: bool,
    },
    /// Put a backup in place of the store, with the node stopped. Refuses a
    /// backup older than the newest checkpoint this node signed (peers
    /// hold it) unless --accept-older; the current store is moved aside,
    /// never deleted.
    Restore {
        #[command(flatten)]
        config: ConfigArg,
        /// The backup directory (as `lienthong backup` printed it).
        #[arg(long)]
        from: PathBuf,
        /// Restore even if the backup is behind the newest signed
        /// checkpoint (the node will refuse writes once a peer shows it).
        #[arg(long)]
        accept_older: bool,
    },
    /// Statistics over a period from the entries this node holds: per
    /// province and per category; a table, or CSV.
    #[command(
        after_help = "Example:\n  lienthong report --from 2026-11-01 --to 2026-12-01 --csv > thang-11.csv"
    )]
    Report {
        #[command(flatten)]
        config: ConfigArg,
        /// First day (YYYY-MM-DD, UTC) or Unix ms, inclusive.
        #[arg(long)]
        from: String,
        /// Last day (YYYY-MM-DD, UTC) or Unix ms, exclusive.
        #[arg(long)]
        to: String,
        /// CSV instead of a table.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum FederationCommand {
    /// Print this member's entry for the manifest (TOML), to send to the others.
    #[command(
        after_help = "Example:\n  lienthong federation member --config lienthong.toml --endpoint 10.1.0.5:7501 >> manifest.toml"
    )]
    Member {
        #[command(flatten)]
        config: ConfigArg,
        /// host:port where other members reach this node's Federation API.
        #[arg(long)]
        endpoint: String,
        /// Print this signing key instead of the configured one (for a key
        /// rotation: the key made by `lienthong key new`).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Hand a manifest file with newer versions to this node: checks every
    /// version's quorum, merges them into the node's manifest file; the
    /// running node adopts them within `federation.manifest_poll_ms` and
    /// its peers fetch them from it.
    #[command(after_help = "Example:
  lienthong federation publish --config lienthong.toml --file manifest-v2.json")]
    Publish {
        #[command(flatten)]
        config: ConfigArg,
        /// The manifest file holding the new versions.
        #[arg(long)]
        file: PathBuf,
    },
    /// Add a new manifest version (from TOML) to a manifest file, unsigned.
    #[command(
        after_help = "Example:\n  lienthong federation propose --toml manifest-v2.toml --file manifest.json"
    )]
    Propose {
        /// The manifest version, as TOML.
        #[arg(long)]
        toml: PathBuf,
        /// The agreement in its own TOML file (then `--toml` holds only
        /// the membership).
        #[arg(long)]
        agreement: Option<PathBuf>,
        /// The manifest file (created if absent).
        #[arg(long)]
        file: PathBuf,
    },
    /// Sign the newest version in a manifest file with this member's key.
    #[command(
        after_help = "Example:\n  lienthong federation sign --config lienthong.toml --file manifest.json"
    )]
    Sign {
        #[command(flatten)]
        config: ConfigArg,
        /// The manifest file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Show the versions of a manifest file and whether each has its quorum.
    #[command(after_help = "Example:\n  lienthong federation show --file manifest.json")]
    Show {
        /// The manifest file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Ask the running node how the federation looks from here: manifest
    /// in force, each peer's connection, replication cursor and
    /// witnessing, and any evidence held.
    #[command(after_help = "Example:\n  lienthong federation status --config lienthong.toml")]
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the GetStatus answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Witnessing and evidence as the running node sees them: who cosigned
    /// its latest checkpoint, what it cosigned of each peer, and every
    /// piece of evidence of equivocation or refused signed entries.
    /// Exits with status 3 if it holds evidence of equivocation.
    #[command(after_help = "Example:\n  lienthong audit status --config lienthong.toml")]
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print status and evidence as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write an audit bundle from the running node: its feed with every
    /// checkpoint and cosignature, the entries it received with their
    /// proofs, the manifest chain and its evidence, signed by this member.
    /// Format: docs/audit-format.md.
    #[command(
        after_help = "Example:\n  lienthong audit export --config lienthong.toml --out hn-2026.ltb --from 2026-01-01 --to 2027-01-01"
    )]
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// The bundle file to write (replaced if it exists).
        #[arg(long)]
        out: PathBuf,
        /// Only entries received from this member (this node's own feed is
        /// always included: it holds the receipts).
        #[arg(long)]
        member: Option<String>,
        /// Entries created on or after this date (YYYY-MM-DD, UTC) or Unix ms.
        #[arg(long)]
        from: Option<String>,
        /// Entries created before this date (YYYY-MM-DD, UTC) or Unix ms.
        #[arg(long)]
        to: Option<String>,
    },
    /// Verify audit bundles without trusting any node: every signature,
    /// Merkle root, inclusion and consistency proof, cosignature and
    /// manifest version, and the cross-check of senders' feeds against
    /// receivers' receipts. Needs no config and no network. Exits 0 only
    /// if everything verifies.
    #[command(
        after_help = "Example:\n  lienthong audit verify hn.ltb bn.ltb --vkey \"$(cat hanoi.vkey)\" --json report.json"
    )]
    Verify {
        /// Bundle files, verified together (one per member, or several).
        #[arg(required = true)]
        bundles: Vec<PathBuf>,
        /// A member's verifier key the auditor trusts (as `lienthong key
        /// show` prints it); repeat for several. The manifest chain in the
        /// bundles must list it and be signed with it.
        #[arg(long = "vkey", required = true)]
        vkeys: Vec<String>,
        /// Also write the full report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// A receipt later than this after its entry is late (seconds).
        #[arg(long, default_value_t = 3600)]
        late_after_s: u64,
    },
}

#[derive(Args)]
struct ConfigArg {
    /// The node's config file.
    #[arg(
        long,
        short = 'c',
        env = "LIENTHONG_CONFIG",
        default_value = "lienthong.toml"
    )]
    config: PathBuf,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Issue a client certificate (clients/NAME-cert.pem and -key.pem).
    #[command(after_help = "Example:\n  lienthong client add hotline-1800 --config lienthong.toml")]
    Add {
        /// Name of the local system, e.g. hotline-1800.
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Revoke a client certificate (lost laptop, retired system): it is
    /// listed in clients/revoked.json and in the CRL at api.client_crl,
    /// which the running node re-reads within seconds; new connections
    /// with it are refused at the handshake.
    #[command(
        after_help = "Example:\n  lienthong client revoke hotline-1800 --config lienthong.toml"
    )]
    Revoke {
        /// Name the certificate was issued to.
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print the verifier key (C2SP vkey form) auditors and peers use.
    #[command(
        after_help = "Example:\n  lienthong key show --config lienthong.toml\n  # lienthong.example/bac-bo-11/01+1a2b3c4d+AXk…"
    )]
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the public key as SPKI PEM instead.
        #[arg(long)]
        pem: bool,
        /// Print the SHA-256 pin of this member's peer TLS key instead.
        #[arg(long, conflicts_with = "pem")]
        pin: bool,
    },
    /// Make a new signing key (PKCS#8 PEM, mode 0600) for a key rotation and
    /// print its verifier key. It takes effect through a manifest version
    /// listing it (`federation member --key`, `propose`, `sign`, `publish`);
    /// then point keys.signing_key at it and restart.
    #[command(after_help = "Example:
  lienthong key new --config lienthong.toml --out keys/signing-2026.pem")]
    New {
        #[command(flatten)]
        config: ConfigArg,
        /// Where to write the key; must not exist.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AlertCommand {
    /// Submit alerts from a JSON file (one Alert or an array, proto3 JSON).
    #[command(
        after_help = "Example:\n  lienthong alert submit --config lienthong.toml --file alert.json\n\nalert.json:\n  {\"reference\": \"hotline-2026-0001\", \"category\": \"CATEGORY_COUNTERFEIT\",\n   \"severity\": \"SEVERITY_HIGH\", \"title\": \"Mỹ phẩm giả\", \"location\": {\"province\": \"20\"},\n   \"observedUnixMs\": \"1795000000000\"}"
    )]
    Submit {
        #[command(flatten)]
        config: ConfigArg,
        /// JSON file, or - for standard input.
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Print answers as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Show one entry.
    #[command(
        after_help = "Example:\n  lienthong alert get --config lienthong.toml --reference hotline-2026-0001"
    )]
    Get {
        #[command(flatten)]
        config: ConfigArg,
        /// Entry id (64 hex characters).
        #[arg(long, conflicts_with_all = ["index", "reference"])]
        id: Option<String>,
        /// Index in this member's feed.
        #[arg(long, conflicts_with = "reference")]
        index: Option<u64>,
        /// The submitting system's reference.
        #[arg(long)]
        reference: Option<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Search stored alerts, newest first.
    #[command(
        after_help = "Examples:\n  lienthong alert list --config lienthong.toml --kind counterfeit --text \"hang gia\"\n  lienthong alert list --subject 29A-123.45\n  lienthong alert list --province 20 --severity critical --all"
    )]
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Violation category (repeatable): smuggling, trade-fraud, counterfeit, intellectual-property, prohibited-goods, food-safety, poor-quality-goods, other.
        #[arg(long = "category", visible_alias = "kind")]
        categories: Vec<String>,
        /// Severity (repeatable): low, medium, high, critical.
        #[arg(long = "severity")]
        severities: Vec<String>,
        /// Province code the alert was observed in or concerns.
        #[arg(long)]
        province: Option<String>,
        /// Subject identifier: tax code, plate, citizen id or HS code.
        #[arg(long)]
        subject: Option<String>,
        /// Words to find, with or without diacritics.
        #[arg(long)]
        text: Option<String>,
        /// Author member code.
        #[arg(long)]
        author: Option<String>,
        /// Entries per page.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Follow every page.
        #[arg(long)]
        all: bool,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum FeedCommand {
    /// Verify the node's feed against its checkpoint using only the vkey.
    #[command(
        after_help = "Example:\n  lienthong feed verify --config lienthong.toml --vkey \"$(lienthong key show -c lienthong.toml)\" --save cp.txt\n  # later: --previous cp.txt proves the feed only grew"
    )]
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// The member's verifier key, as printed by `lienthong key show`.
        #[arg(long)]
        vkey: String,
        /// A checkpoint saved earlier: prove the current one extends it.
        #[arg(long)]
        previous: Option<PathBuf>,
        /// Save the verified checkpoint here.
        #[arg(long)]
        save: Option<PathBuf>,
        /// The federation's manifest file: needed once the member has
        /// rotated its key, since each entry is checked with the key in
        /// force at its manifest version (and `--vkey` must be one of the
        /// member's keys in it).
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
}

/// An error that ends the command with a particular exit status (the
/// others end it with 1).
#[derive(Debug, thiserror::Error)]
#[error("{1}")]
struct ExitWith(u8, String);

/// A reader that went away (`lienthong alert list | head`) is not an
/// error of ours: end quietly, with the status a shell gives a process
/// killed by SIGPIPE (128 + 13), instead of a panic from `println!`.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// jemalloc rather than glibc's malloc: a node allocates and frees many
/// small buffers per entry (decoding, terms, sled's pages), and glibc's
/// malloc and free were a fifth of a catching-up peer's CPU. With jemalloc,
/// one arena and a background purging thread (options in
/// `.cargo/config.toml`), catch-ups and fills run faster while a node
/// holding 1M entries stays under 64 MiB idle (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<ExitWith>() {
                Some(ExitWith(code, _)) => ExitCode::from(*code),
                None => ExitCode::FAILURE,
            }
        }
    }
}

fn init_logging(cfg: &config::Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIENTHONG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log_level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        config::LogFormat::Json => b.json().init(),
        config::LogFormat::Text => b.init(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init {
            member,
            name,
            dir,
            federation,
            listen,
            hosts,
            plaintext_dev,
        } => {
            let path = init::init(&init::InitOptions {
                member,
                name,
                dir,
                federation,
                listen,
                hosts,
                plaintext_dev,
            })?;
            println!("created {}", path.display());
            println!("next: lienthong run --config {}", path.display());
            Ok(())
        }
        Command::Run {
            config,
            check,
            ready_file,
        } => {
            let cfg = config::load(&config.config, true)?;
            init_logging(&cfg);
            let prepared = serve::prepare(cfg)?;
            if check {
                println!("configuration, keys and store are OK");
                return Ok(());
            }
            runtime()?.block_on(serve::serve(prepared, ready_file.as_deref()))
        }
        Command::Client(ClientCommand::Add { name, config }) => {
            let (cert, key) = init::client_add(&config.config, &name)?;
            println!("issued {} and {}", cert.display(), key.display());
            println!(
                "give both, with the CA certificate (api.client_ca), to the system {name:?}; keep the key private"
            );
            Ok(())
        }
        Command::Client(ClientCommand::Revoke { name, config }) => {
            let crl = init::client_revoke(&config.config, &name)?;
            println!(
                "revoked the certificate of {name}; {} updated (the running node refuses it for new connections within seconds)",
                crl.display()
            );
            Ok(())
        }
        Command::Key(KeyCommand::Show { config, pem, pin }) => {
            let cfg = config::load(&config.config, false)?;
            if pin {
                println!("{}", peer_pin(&cfg)?.to_hex());
                return Ok(());
            }
            let key = cfg.load_signing_key()?;
            if pem {
                print!("{}", lienthong_core::keys::verifying_key_to_pem(&key)?);
            } else {
                println!(
                    "{}",
                    lienthong_log::vkey_string(&cfg.origin(), &key.verifying_key())
                );
            }
            Ok(())
        }
        Command::Key(KeyCommand::New { config, out }) => {
            let cfg = config::load(&config.config, false)?;
            if out.exists() {
                anyhow::bail!("{} exists; choose a new file name", out.display());
            }
            let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
            pki::write_private(&out, &lienthong_core::keys::signing_key_to_pem(&key)?)?;
            println!(
                "{}",
                lienthong_log::vkey_string(&cfg.origin(), &key.verifying_key())
            );
            eprintln!(
                "wrote {} (0600); next: `lienthong federation member --key {}` for the manifest change",
                out.display(),
                out.display()
            );
            Ok(())
        }
        Command::Alert(cmd) => runtime()?.block_on(alert(cmd)),
        Command::Case(cmd) => runtime()?.block_on(coord_cli::case(cmd)),
        Command::Backup {
            config,
            label,
            json,
        } => runtime()?.block_on(async {
            let cfg = config::load(&config.config, false)?;
            let mut c = pb::admin_client::AdminClient::new(client::connect(&cfg).await?);
            let r = c
                .backup(pb::BackupRequest { label })
                .await
                .map_err(|s| anyhow::anyhow!("backup refused: {}", client::explain(&s)))?
                .into_inner();
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "backup written to {}\n  feed size {}, checkpoint size {}, {} records ({} bytes); writes waited {} ms",
                    r.path, r.feed_size, r.checkpoint_size, r.records, r.bytes, r.pause_ms
                );
            }
            Ok(())
        }),
        Command::Restore {
            config,
            from,
            accept_older,
        } => backup::restore(&config::load(&config.config, false)?, &from, accept_older),
        Command::Assist(cmd) => runtime()?.block_on(coord_cli::assist(cmd)),
        Command::Inspection(cmd) => runtime()?.block_on(coord_cli::inspection(cmd)),
        Command::Meeting { config, file, json } => {
            runtime()?.block_on(coord_cli::meeting(&config.config, &file, json))
        }
        Command::Retract {
            config,
            id,
            reason,
            json,
        } => runtime()?.block_on(coord_cli::retract(&config.config, &id, &reason, json)),
        Command::Correct {
            config,
            id,
            file,
            reason,
            json,
        } => runtime()?.block_on(coord_cli::correct(
            &config.config,
            &id,
            &file,
            &reason,
            json,
        )),
        Command::Report {
            config,
            from,
            to,
            csv,
            json,
        } => runtime()?.block_on(coord_cli::report(&config.config, &from, &to, csv, json)),
        Command::Audit(AuditCommand::Export {
            config,
            out,
            member,
            from,
            to,
        }) => {
            let cfg = config::load(&config.config, false)?;
            let req = pb::ExportBundleRequest {
                member: member.unwrap_or_default(),
                from_unix_ms: from
                    .as_deref()
                    .map(client::parse_time)
                    .transpose()?
                    .unwrap_or(0),
                to_unix_ms: to
                    .as_deref()
                    .map(client::parse_time)
                    .transpose()?
                    .unwrap_or(0),
            };
            runtime()?.block_on(client::export(&cfg, req, &out))
        }
        Command::Audit(AuditCommand::Verify {
            bundles,
            vkeys,
            json,
            late_after_s,
        }) => audit_verify(&bundles, &vkeys, json.as_deref(), late_after_s),
        Command::Audit(AuditCommand::Status { config, json }) => {
            let cfg = config::load(&config.config, false)?;
            let equivocations = runtime()?.block_on(client::status(&cfg, json, true))?;
            if equivocations > 0 {
                return Err(ExitWith(
                    3,
                    format!("this node holds evidence that {equivocations} time(s) a member signed checkpoints that cannot both be honest; see above, and export it for the auditors"),
                )
                .into());
            }
            Ok(())
        }
        Command::Federation(cmd) => federation(cmd),
        Command::Tls(cmd) => renew::run(cmd),
        Command::Doctor { config } => doctor::doctor(&config.config),
        Command::Feed(FeedCommand::Verify {
            config,
            vkey,
            previous,
            save,
            manifest,
        }) => {
            let cfg = config::load(&config.config, false)?;
            let chain = manifest
                .map(|m| manifest_file::ManifestFile::read(&m)?.verify())
                .transpose()
                .context("--manifest")?;
            runtime()?.block_on(client::verify_feed(
                &cfg,
                &vkey,
                chain.as_ref(),
                previous.as_deref(),
                save.as_deref(),
            ))
        }
    }
}

fn audit_verify(
    bundles: &[PathBuf],
    vkeys: &[String],
    json: Option<&std::path::Path>,
    late_after_s: u64,
) -> Result<()> {
    let anchors = vkeys
        .iter()
        .map(|v| lienthong_audit::TrustAnchor::parse(v).with_context(|| format!("--vkey {v}")))
        .collect::<Result<Vec<_>>>()?;
    let inputs = bundles
        .iter()
        .map(|p| {
            lienthong_audit::BundleInput::open(p)
                .with_context(|| format!("opening {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let total: u64 = bundles
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let options = lienthong_audit::VerifyOptions {
        late_after: std::time::Duration::from_secs(late_after_s),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let mut last = std::time::Instant::now();
    let mut progress = |p: lienthong_audit::Progress| {
        if last.elapsed() >= std::time::Duration::from_secs(1) {
            last = std::time::Instant::now();
            eprintln!(
                "  {} records, {:.0}% of {} MB",
                p.records,
                100.0 * p.bytes as f64 / total.max(1) as f64,
                total / 1_000_000
            );
        }
    };
    let report = lienthong_audit::verify(inputs, &anchors, &options, &mut progress);
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "federation {}: manifest versions 1..{}, {} bundle(s), {} feed(s), {:.1} s",
        report.federation,
        report.manifest_versions,
        report.bundles.len(),
        report.feeds.len(),
        started.elapsed().as_secs_f64()
    );
    for c in &report.checks {
        println!(
            "  {:<24} {:>10} passed {:>6} failed",
            c.check.name(),
            c.passed,
            c.failed
        );
    }
    let d = &report.deliveries;
    println!(
        "  deliveries: {} expected, {} delivered ({} late), {} missing, {} not checkable; {} receipts, {} unmatched",
        d.expected,
        d.delivered,
        d.late,
        d.missing,
        d.not_checkable,
        d.receipts,
        d.receipts_unmatched
    );
    for f in &report.failures {
        println!("FAILED {} at {}: {}", f.check, f.at, f.message);
    }
    if report.failures_not_listed > 0 {
        println!("… and {} more failures", report.failures_not_listed);
    }
    if report.passed() {
        println!("VERIFIED");
        Ok(())
    } else {
        anyhow::bail!("the bundles do NOT verify (see the failures above)")
    }
}

/// The pin of this member's peer TLS key (`tls/peer-cert.pem` next to the
/// config unless `[federation]` names another).
fn peer_pin(cfg: &config::Config) -> Result<lienthong_federation::tls::SpkiPin> {
    let path = cfg
        .peering
        .as_ref()
        .map(|f| f.tls_cert.clone())
        .unwrap_or_else(|| {
            cfg.path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("tls/peer-cert.pem")
        });
    let pem =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let identity = lienthong_federation::tls::TlsIdentity {
        cert_pem: pem,
        key_pem: String::new(),
    };
    Ok(identity.pin()?)
}

fn federation(cmd: FederationCommand) -> Result<()> {
    match cmd {
        FederationCommand::Member {
            config,
            endpoint,
            key,
        } => {
            let cfg = config::load(&config.config, false)?;
            let key = match key {
                None => cfg.load_signing_key()?,
                Some(path) => {
                    let pem = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    lienthong_core::keys::signing_key_from_pem(&pem)
                        .with_context(|| format!("{} is not a signing key", path.display()))?
                }
            };
            println!("[[members]]");
            println!("code = {:?}", cfg.member);
            println!("name = {:?}", cfg.name);
            println!("endpoint = {endpoint:?}");
            println!(
                "signing_key = {:?}",
                lienthong_log::vkey_string(&cfg.origin(), &key.verifying_key())
            );
            println!("tls_spki_sha256 = {:?}", peer_pin(&cfg)?.to_hex());
            Ok(())
        }
        FederationCommand::Propose {
            toml,
            agreement,
            file,
        } => {
            let text = std::fs::read_to_string(&toml)
                .with_context(|| format!("reading {}", toml.display()))?;
            let m = match agreement {
                None => lienthong_core::manifest::Manifest::from_toml(&text)?,
                Some(a) => {
                    let agreement = std::fs::read_to_string(&a)
                        .with_context(|| format!("reading {}", a.display()))?;
                    lienthong_core::manifest::Manifest::from_toml_with_agreement(&text, &agreement)?
                }
            };
            let mut f = if file.exists() {
                manifest_file::ManifestFile::read(&file)?
            } else {
                manifest_file::ManifestFile::default()
            };
            let version = m.version;
            f.propose(m)?;
            f.write(&file)?;
            println!(
                "added version {version} to {}; now each member runs `lienthong federation sign --file {}`",
                file.display(),
                file.display()
            );
            Ok(())
        }
        FederationCommand::Publish { config, file } => {
            let cfg = config::load(&config.config, false)?;
            let target = cfg
                .peering
                .as_ref()
                .map(|f| f.manifest.clone())
                .context("this node has no [federation] section")?;
            let offered = manifest_file::ManifestFile::read(&file)?;
            let offered_chain = offered
                .verify()
                .with_context(|| format!("{} is not a valid manifest chain", file.display()))?;
            let mut chain = manifest_file::ManifestFile::read(&target)?
                .verify()
                .with_context(|| format!("the node's manifest {}", target.display()))?;
            let before = chain.current().version();
            let signed: Vec<_> = offered_chain.signed().cloned().collect();
            let added = chain.merge(&signed)?;
            if added == 0 {
                println!(
                    "{} has nothing newer than version {before}; nothing to do",
                    file.display()
                );
                return Ok(());
            }
            manifest_file::ManifestFile::from_chain(&chain).write(&target)?;
            println!(
                "{}: version {before} -> {} in force (hash {}); the node adopts it within its poll interval and its peers fetch it",
                target.display(),
                chain.current().version(),
                hex::encode(chain.current().hash())
            );
            Ok(())
        }
        FederationCommand::Sign { config, file } => {
            let cfg = config::load(&config.config, false)?;
            let key = cfg.load_signing_key()?;
            let mut f = manifest_file::ManifestFile::read(&file)?;
            f.sign_last(&cfg.member, &key)?;
            f.write(&file)?;
            println!(
                "{} signed the newest version in {}",
                cfg.member,
                file.display()
            );
            Ok(())
        }
        FederationCommand::Status { config, json } => {
            let cfg = config::load(&config.config, false)?;
            runtime()?.block_on(client::status(&cfg, json, false))?;
            Ok(())
        }
        FederationCommand::Show { file } => {
            let f = manifest_file::ManifestFile::read(&file)?;
            for v in &f.versions {
                let signers: Vec<&str> = v.signatures.iter().map(|s| s.member.as_str()).collect();
                println!(
                    "version {}: {} members, signed by {}",
                    v.manifest.version,
                    v.manifest.members.len(),
                    signers.join(" ")
                );
            }
            match f.verify() {
                Ok(c) => println!(
                    "in force: version {} (manifest hash {})",
                    c.current().version(),
                    hex::encode(c.current().hash())
                ),
                Err(e) => println!("not in force: {e:#}"),
            }
            Ok(())
        }
    }
}

async fn alert(cmd: AlertCommand) -> Result<()> {
    match cmd {
        AlertCommand::Submit { config, file, json } => {
            client::submit(&config::load(&config.config, false)?, &file, json).await
        }
        AlertCommand::Get {
            config,
            id,
            index,
            reference,
            json,
        } => {
            use pb::get_entry_request::Key;
            let key = match (id, index, reference) {
                (Some(h), _, _) => Key::EntryIdHex(h),
                (_, Some(i), _) => Key::OwnIndex(i),
                (_, _, Some(r)) => Key::Reference(r),
                _ => anyhow::bail!("give one of --id, --index or --reference"),
            };
            client::get(&config::load(&config.config, false)?, key, json).await
        }
        AlertCommand::List {
            config,
            categories,
            severities,
            province,
            subject,
            text,
            author,
            limit,
            all,
            json,
        } => {
            let q = pb::QueryRequest {
                categories: categories
                    .iter()
                    .map(|c| client::parse_category(c))
                    .collect::<Result<_>>()?,
                severities: severities
                    .iter()
                    .map(|s| {
                        pb::Severity::from_str_name(&format!("SEVERITY_{}", s.to_ascii_uppercase()))
                            .map(|s| s as i32)
                            .ok_or_else(|| {
                                anyhow::anyhow!(
                                    "unknown severity {s:?}: use low, medium, high or critical"
                                )
                            })
                    })
                    .collect::<Result<_>>()?,
                province: province.unwrap_or_default(),
                subject_id: subject.unwrap_or_default(),
                text: text.unwrap_or_default(),
                author: author.unwrap_or_default(),
                page_size: limit,
                ..Default::default()
            };
            client::list(&config::load(&config.config, false)?, q, all, json).await
        }
    }
}
