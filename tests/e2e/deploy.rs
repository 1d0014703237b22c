//! Issue 9 (operations): the deployment files a province's IT staff use stay
//! valid as the code changes.
//!
//! - Every production config in `deploy/provinces/` has exactly the keys
//!   `lienthong init` writes, absolute paths under `/var/lib/lienthong`, a
//!   TLS API with client certificates and loopback-only metrics, and passes
//!   `lienthong run --check` once those paths point at a node made by
//!   `lienthong init`, with the eleven provinces' manifest signed under
//!   `deploy/federation/agreement-bac-bo-11.toml`.
//! - One of them, as written (ports moved to free loopback ports), serves:
//!   the CLI reaches it through its `[cli]` section, metrics answer.
//! - A config with two mistakes is refused with both named, nothing bound.
//! - `deploy/systemd/lienthong.service`, `deploy/container/Containerfile`
//!   and the shell examples in the operator docs only run subcommands and
//!   flags the binary accepts (checked against its `--help`), and the unit's
//!   `ExecStartPre` passes on a production config.
//!
//! - `deploy/container/compose.yaml` has one service per province file, each
//!   with its own volume and distinct published ports; it is not parsed as
//!   YAML (no YAML crate is in Cargo.lock and this suite adds no
//!   dependencies): a line-level reader of its layout does.
//! - `deploy/grafana/lienthong-dashboard.json` queries only metric names a
//!   real federated node exports.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use lienthong_tests::{AGREEMENT_ALL, Node, binary, free_port, http_get, lienthong, run_ok};

/// Where the production files keep the node directory.
const PROD_DIR: &str = "/var/lib/lienthong";

/// The eleven northern provinces of the agreement.
const PROVINCES: [&str; 11] = [
    "01", "04", "15", "19", "20", "22", "24", "25", "31", "33", "37",
];

fn repo(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(rel)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `deploy/provinces/*.toml`, sorted.
fn province_files() -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("deploy/provinces"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    files.sort();
    Ok(files)
}

/// The settings of a config file as `section.key` → value, for the subset
/// of TOML our configs use (tables, `key = "string"` or `key = number`,
/// comments). With `commented`, lines commented out as `# key = …` and
/// `# [table]` count too: that is how `init` writes optional sections.
fn settings(text: &str, commented: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = match line.strip_prefix("# ") {
            Some(rest) if commented => rest,
            _ => line,
        };
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let Some((key, rest)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim_end();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        let rest = rest.trim_start();
        let value = match rest.strip_prefix('"') {
            Some(s) => s.split('"').next().unwrap_or_default(),
            None => rest.split('#').next().unwrap_or_default().trim(),
        };
        out.insert(format!("{section}.{key}"), value.to_owned());
    }
    out
}

fn get<'a>(s: &'a BTreeMap<String, String>, key: &str) -> Result<&'a str> {
    s.get(key)
        .map(String::as_str)
        .with_context(|| format!("{key} is not set"))
}

/// The keys of the config `lienthong init` writes, optional ones included.
fn init_keys() -> Result<BTreeSet<String>> {
    let dir = tempfile::tempdir()?;
    let node = dir.path().join("node");
    run_ok(&[
        "init",
        "--member",
        "01",
        "--name",
        "Hà Nội",
        "--dir",
        &node.display().to_string(),
    ])?;
    Ok(settings(&read(&node.join("lienthong.toml"))?, true)
        .into_keys()
        .collect())
}

/// The production-policy checks of one province file; its problems.
fn policy_problems(file: &Path, init_keys: &BTreeSet<String>) -> Result<Vec<String>> {
    let text = read(file)?;
    let s = settings(&text, false);
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    let keys: BTreeSet<String> = s.keys().cloned().collect();
    check(
        &keys == init_keys,
        format!(
            "keys differ from what `lienthong init` writes: missing {:?}, extra {:?}",
            init_keys.difference(&keys).collect::<Vec<_>>(),
            keys.difference(init_keys).collect::<Vec<_>>()
        ),
    );
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let (code, slug) = stem.split_once('-').unwrap_or((stem, ""));
    let member = s.get("node.member").map(String::as_str).unwrap_or_default();
    let name = s.get("node.name").map(String::as_str).unwrap_or_default();
    check(
        member == code,
        format!("node.member = {member:?} but the file is named for {code}"),
    );
    check(
        lienthong_core::provinces::province_name(code) == Some(name),
        format!(
            "node.name = {name:?} but province {code} is {:?}",
            lienthong_core::provinces::province_name(code)
        ),
    );
    check(
        lienthong_core::text::words(name).join("-") == slug,
        format!("the file name's {slug:?} is not the ASCII form of {name:?}"),
    );
    for (key, value) in &s {
        let is_path =
            value.ends_with(".pem") || value.ends_with(".json") || key.as_str() == "store.dir";
        check(
            !is_path || value.starts_with(&format!("{PROD_DIR}/")),
            format!("{key} = {value:?} is not an absolute path under {PROD_DIR}"),
        );
    }
    let api = s.get("api.listen").map(String::as_str).unwrap_or_default();
    check(
        api.starts_with("0.0.0.0:"),
        format!("api.listen = {api:?}: production serves the province's network on 0.0.0.0"),
    );
    check(
        s.get("api.plaintext_dev").is_none_or(|v| v == "false"),
        "api.plaintext_dev must be off in production".into(),
    );
    check(
        s.contains_key("api.client_ca") && s.contains_key("api.client_crl"),
        "the API must require client certificates (api.client_ca, api.client_crl)".into(),
    );
    let metrics = s
        .get("metrics.listen")
        .map(String::as_str)
        .unwrap_or_default();
    check(
        metrics.starts_with("127.0.0.1:"),
        format!("metrics.listen = {metrics:?}: plain HTTP, keep it on 127.0.0.1"),
    );
    check(
        s.contains_key("federation.listen"),
        "[federation] is missing".into(),
    );
    Ok(problems)
}

#[test]
fn province_files_are_the_eleven_with_init_keys_and_production_values() -> Result<()> {
    let files = province_files()?;
    let codes: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name()?.to_str()?.get(..2).map(str::to_owned))
        .collect();
    assert_eq!(codes, PROVINCES, "files: {files:?}");
    let keys = init_keys()?;
    let mut all = Vec::new();
    for f in &files {
        for p in policy_problems(f, &keys)? {
            all.push(format!("{}: {p}", f.display()));
        }
    }
    assert!(all.is_empty(), "\n{}", all.join("\n"));
    Ok(())
}

/// Writes `file` over the config of the node in `node_dir` with the
/// production paths pointed at `node_dir`, as an operator installs it over
/// the config `init` wrote; returns the config path.
fn install(file: &Path, node_dir: &Path) -> Result<PathBuf> {
    let text = read(file)?;
    ensure!(
        text.contains(&format!("\"{PROD_DIR}/")),
        "{} has no {PROD_DIR} paths",
        file.display()
    );
    let config = node_dir.join("lienthong.toml");
    std::fs::write(
        &config,
        text.replace(PROD_DIR, &node_dir.display().to_string()),
    )?;
    Ok(config)
}

/// The province files' nodes, made by `lienthong init`, and a manifest of
/// all of them under the northern agreement, signed by every member and
/// copied into each node directory.
struct Provinces {
    /// (province file, node)
    nodes: Vec<(PathBuf, Node)>,
    /// Federation API port of each member in the manifest.
    peer_ports: HashMap<String, u16>,
}

fn provinces() -> Result<Provinces> {
    let work = tempfile::tempdir()?;
    let mut federation = BTreeSet::new();
    let mut membership = String::new();
    let mut nodes = Vec::new();
    let mut peer_ports = HashMap::new();
    for file in province_files()? {
        let s = settings(&read(&file)?, false);
        let (code, name) = (get(&s, "node.member")?, get(&s, "node.name")?);
        federation.insert(get(&s, "node.federation")?.to_owned());
        let node = Node::init(code, name)?;
        let port = free_port();
        membership.push_str(&run_ok(&[
            "federation",
            "member",
            "--config",
            &node.config_arg(),
            "--endpoint",
            &format!("127.0.0.1:{port}"),
        ])?);
        membership.push('\n');
        peer_ports.insert(code.to_owned(), port);
        nodes.push((file, node));
    }
    ensure!(
        federation.len() == 1,
        "the province files name different federations: {federation:?}"
    );
    let toml = work.path().join("membership.toml");
    std::fs::write(
        &toml,
        format!(
            "federation = {:?}\nversion = 1\n\n{membership}",
            federation.first().cloned().unwrap_or_default()
        ),
    )?;
    let manifest = work.path().join("manifest.json");
    let m = manifest.display().to_string();
    run_ok(&[
        "federation",
        "propose",
        "--toml",
        &toml.display().to_string(),
        "--agreement",
        &repo("deploy/federation/agreement-bac-bo-11.toml")
            .display()
            .to_string(),
        "--file",
        &m,
    ])?;
    for (_, node) in &nodes {
        run_ok(&[
            "federation",
            "sign",
            "--config",
            &node.config_arg(),
            "--file",
            &m,
        ])?;
    }
    let shown = run_ok(&["federation", "show", "--file", &m])?;
    ensure!(shown.contains("in force: version 1"), "{shown}");
    for (_, node) in &nodes {
        std::fs::copy(&manifest, node.path().join("manifest.json"))?;
    }
    Ok(Provinces { nodes, peer_ports })
}

#[test]
fn every_province_config_passes_run_check() -> Result<()> {
    let p = provinces()?;
    let mut failures = Vec::new();
    for (file, node) in &p.nodes {
        let config = install(file, &node.path())?;
        let out = lienthong(&["run", "--check", "--config", &config.display().to_string()])?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains("configuration, keys and store are OK") {
            failures.push(format!(
                "{}: {}\n{stdout}{}",
                file.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    Ok(())
}

/// One province's production config with its listen addresses moved to
/// `api`, `peer` and `metrics` on 127.0.0.1 (tests bind loopback only).
fn on_loopback(config: &Path, api: u16, peer: u16, metrics: u16) -> Result<()> {
    let text = read(config)?;
    let moved = text
        .replace("\"0.0.0.0:7401\"", &format!("\"127.0.0.1:{api}\""))
        .replace("\"0.0.0.0:7501\"", &format!("\"127.0.0.1:{peer}\""))
        .replace("\"127.0.0.1:9464\"", &format!("\"127.0.0.1:{metrics}\""));
    ensure!(
        moved.matches("\"127.0.0.1:").count() == 3,
        "{} does not listen on 0.0.0.0:7401, 0.0.0.0:7501 and 127.0.0.1:9464",
        config.display()
    );
    std::fs::write(config, moved)?;
    Ok(())
}

/// Lạng Sơn's node from its production file, ports moved to loopback;
/// with its metrics and Federation API ports.
fn lang_son(p: &mut Provinces) -> Result<(&mut Node, u16, u16)> {
    let peer = p.peer_ports["20"];
    let (file, node) = p
        .nodes
        .iter_mut()
        .find(|(_, n)| n.member == "20")
        .context("no 20 in deploy/provinces")?;
    let config = install(file, &node.path())?;
    let metrics = free_port();
    on_loopback(&config, node.port, peer, metrics)?;
    Ok((node, metrics, peer))
}

#[test]
fn a_province_config_serves_as_written() -> Result<()> {
    let mut p = provinces()?;
    let (node, metrics, _) = lang_son(&mut p)?;
    node.start()?;
    let config = node.config_arg();
    // The [cli] section's absolute paths reach the API.
    let status = run_ok(&["federation", "status", "--config", &config])?;
    assert!(
        status.contains("member 20 of lienthong.example/bac-bo-11"),
        "{status}"
    );
    run_ok(&["audit", "status", "--config", &config])?;
    let scrape = http_get(metrics, "/metrics")?;
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    node.stop()?;
    Ok(())
}

#[test]
fn a_config_with_two_mistakes_is_refused_whole_before_binding() -> Result<()> {
    let mut p = provinces()?;
    let (node, metrics, peer) = lang_son(&mut p)?;
    let api = node.port;
    // Two mistakes an operator makes: a key copied back without its mode,
    // and a checkpoint interval written in seconds' worth of milliseconds.
    std::fs::set_permissions(
        node.path().join("keys/signing-key.pem"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    let text = read(&node.config())?.replace("interval_ms = 500 ", "interval_ms = 5000");
    ensure!(text.contains("interval_ms = 5000"), "no interval_ms = 500");
    std::fs::write(node.config(), text)?;

    // `run`, not `run --check`: the serving path must refuse too.
    let mut child = Command::new(binary())
        .args(["run", "--config", &node.config_arg()])
        .env_remove("LIENTHONG_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the node started with two mistakes in its config");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().context("stderr")?, &mut err)?;
    assert!(!status.success(), "{err}");
    for needle in [
        "2 problem(s)",
        "keys.signing_key",
        "chmod 600",
        "checkpoint.interval_ms = 5000",
    ] {
        assert!(err.contains(needle), "{needle:?} missing in:\n{err}");
    }
    for port in [api, peer, metrics] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} was bound"
        );
    }
    Ok(())
}

/// What the binary accepts, read from its `--help` pages (cached).
#[derive(Default)]
struct Cli {
    help: HashMap<Vec<String>, String>,
}

impl Cli {
    fn help(&mut self, path: &[String]) -> Result<&str> {
        if !self.help.contains_key(path) {
            let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
            args.push("--help");
            let text = run_ok(&args)?;
            self.help.insert(path.to_vec(), text);
        }
        Ok(&self.help[path])
    }

    /// Checks that `lienthong ARGS` names existing subcommands and only
    /// flags they accept; a flag that takes a value consumes the next
    /// argument.
    fn check(&mut self, args: &[&str]) -> Result<()> {
        let mut path: Vec<String> = Vec::new();
        let mut rest = args;
        while let Some((first, tail)) = rest.split_first() {
            let help = self.help(&path)?;
            if first.starts_with('-') || !help.contains("\nCommands:\n") {
                break;
            }
            let commands = section(help, "Commands:");
            ensure!(
                commands
                    .iter()
                    .any(|c| c.split_whitespace().next() == Some(*first)),
                "`{}` has no subcommand {first:?}",
                shown(&path)
            );
            path.push((*first).to_owned());
            rest = tail;
        }
        let help = self.help(&path)?.to_owned();
        let mut flags = HashMap::new();
        for line in section(&help, "Options:") {
            let words: Vec<&str> = line.split_whitespace().collect();
            for (i, w) in words.iter().enumerate() {
                let w = w.trim_end_matches(',');
                if w.starts_with('-') && w.len() > 1 {
                    let takes_value = words.get(i + 1).is_some_and(|n| n.starts_with('<'));
                    flags.insert(w.to_owned(), takes_value);
                }
            }
        }
        let positional = help.contains("\nArguments:\n");
        let mut i = 0;
        while i < rest.len() {
            let a = rest[i];
            if a.starts_with('-') && a.len() > 1 {
                let (flag, inline) = match a.split_once('=') {
                    Some((f, _)) => (f, true),
                    None => (a, false),
                };
                let Some(takes_value) = flags.get(flag) else {
                    bail!(
                        "`{}` has no flag {flag:?} (it has {:?})",
                        shown(&path),
                        flags.keys().collect::<BTreeSet<_>>()
                    );
                };
                if *takes_value && !inline {
                    i += 1;
                    ensure!(i < rest.len(), "{flag} needs a value");
                }
            } else {
                ensure!(positional, "`{}` takes no argument {a:?}", shown(&path));
            }
            i += 1;
        }
        Ok(())
    }
}

/// `lienthong SUBCOMMAND…`, for messages.
fn shown(path: &[String]) -> String {
    std::iter::once("lienthong")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The entries of a clap help section (`Commands:`, `Options:`), one per
/// line, continuation lines of long descriptions left out. The section runs
/// to the next unindented line: long help (`--help` when an argument has a
/// long description) separates entries with blank lines.
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            let indent = l.len() - l.trim_start().len();
            indent == 2 || (indent <= 6 && l.trim_start().starts_with('-'))
        })
        .map(str::trim)
        .collect()
}

/// `Key=value` lines of a systemd unit, in order.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn the_systemd_unit_runs_what_the_binary_accepts() -> Result<()> {
    let unit = read(&repo("deploy/systemd/lienthong.service"))?;
    let lines = unit_settings(&unit);
    let one = |key: &str| -> Result<&str> {
        let v: Vec<&str> = lines
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect();
        ensure!(v.len() == 1, "{key}= appears {} times", v.len());
        Ok(v[0])
    };
    assert_eq!(one("User")?, "lienthong");
    assert_eq!(one("Restart")?, "on-failure");
    let writable: Vec<&str> = one("ReadWritePaths")?.split_whitespace().collect();
    let mut cli = Cli::default();
    let mut commands = Vec::new();
    for (key, value) in lines.iter().filter(|(k, _)| k.starts_with("Exec")) {
        // Prefixes: - (failure ignored), @, :, +, ! (privileges).
        let line = value.trim_start_matches(['-', '@', ':', '+', '!']);
        ensure!(
            !line.contains(['"', '\'', '$', '%', ';']),
            "{key}: keep the command plain (no quoting, variables, specifiers): {line}"
        );
        let argv: Vec<&str> = line.split_whitespace().collect();
        let (program, args) = argv.split_first().context("empty command")?;
        ensure!(
            program.starts_with('/') && program.ends_with("/lienthong"),
            "{key} runs {program}, not an absolute path to lienthong"
        );
        cli.check(args).with_context(|| format!("{key}={value}"))?;
        let config = args
            .iter()
            .position(|a| *a == "--config")
            .and_then(|i| args.get(i + 1))
            .with_context(|| format!("{key} has no --config"))?;
        ensure!(
            writable.iter().any(|w| Path::new(config).starts_with(w)),
            "{key}: {config} is outside ReadWritePaths {writable:?}"
        );
        commands.push((key.as_str(), args.to_vec()));
    }
    let pre = commands
        .iter()
        .find(|(k, _)| *k == "ExecStartPre")
        .context("no ExecStartPre")?;
    let start = commands
        .iter()
        .find(|(k, _)| *k == "ExecStart")
        .context("no ExecStart")?;
    assert_eq!(
        pre.1.first(),
        start.1.first(),
        "ExecStartPre checks what ExecStart runs"
    );
    assert!(pre.1.contains(&"--check") && !start.1.contains(&"--check"));

    // Everything a province file makes the node write is writable.
    for file in province_files()? {
        let s = settings(&read(&file)?, false);
        for key in ["store.dir", "federation.manifest"] {
            let path = get(&s, key)?;
            assert!(
                writable.iter().any(|w| Path::new(path).starts_with(w)),
                "{}: {key} = {path} is not under ReadWritePaths {writable:?}",
                file.display()
            );
        }
    }

    // The unit's own ExecStartPre passes on a production config.
    let f = lienthong_tests::federation(&[("20", "Lạng Sơn")], 1, AGREEMENT_ALL)?;
    let node = &f.nodes[0];
    install(&repo("deploy/provinces/20-lang-son.toml"), &node.path())?;
    let dir = node.path().display().to_string();
    let args: Vec<String> = pre.1.iter().map(|a| a.replace(PROD_DIR, &dir)).collect();
    let out = Command::new(binary())
        .args(&args)
        .env_remove("LIENTHONG_CONFIG")
        .output()?;
    assert!(
        out.status.success(),
        "ExecStartPre {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `INSTRUCTION …` lines of a Containerfile, continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                if let Some((i, rest)) = current.trim().split_once(char::is_whitespace) {
                    out.push((i.to_ascii_uppercase(), rest.trim().to_owned()));
                }
                current.clear();
            }
        }
    }
    out
}

/// An exec-form (JSON array) command.
fn exec_form(s: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).with_context(|| format!("not an exec-form JSON array: {s}"))
}

#[test]
fn the_container_image_runs_what_the_binary_accepts() -> Result<()> {
    let text = read(&repo("deploy/container/Containerfile"))?;
    let ins = instructions(&text);
    let last = |name: &str| -> Result<&str> {
        ins.iter()
            .rev()
            .find(|(i, _)| i == name)
            .map(|(_, v)| v.as_str())
            .with_context(|| format!("no {name}"))
    };
    let entrypoint = exec_form(last("ENTRYPOINT")?)?;
    assert_eq!(entrypoint, ["/usr/local/bin/lienthong"]);
    let mut cli = Cli::default();
    let cmd = exec_form(last("CMD")?)?;
    cli.check(&cmd.iter().map(String::as_str).collect::<Vec<_>>())
        .context("CMD")?;
    assert_eq!(cmd.first().map(String::as_str), Some("run"));
    if let Ok(health) = last("HEALTHCHECK") {
        let json = health
            .split_once("CMD ")
            .map(|(_, c)| c)
            .context("HEALTHCHECK without CMD")?;
        let argv = exec_form(json)?;
        assert_eq!(
            argv.first(),
            entrypoint.first(),
            "HEALTHCHECK runs lienthong"
        );
        cli.check(&argv[1..].iter().map(String::as_str).collect::<Vec<_>>())
            .context("HEALTHCHECK")?;
    }
    assert!(
        ins.iter()
            .any(|(i, v)| i == "RUN" && v.contains("cargo build --release --locked -p lienthong")),
        "the build stage must build with --locked"
    );
    assert!(
        ins.iter()
            .any(|(i, v)| i == "COPY" && v.split_whitespace().next() == Some(".cargo")),
        "the build stage must copy .cargo (the allocator options compiled into the node)"
    );
    let user = last("USER")?;
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "USER {user}"
    );
    assert!(last("VOLUME")?.contains(&format!("\"{PROD_DIR}\"")));
    // The image exposes the ports the production configs listen on.
    let exposed: BTreeSet<&str> = last("EXPOSE")?.split_whitespace().collect();
    for file in province_files()? {
        let s = settings(&read(&file)?, false);
        for key in ["api.listen", "federation.listen"] {
            let port = get(&s, key)?.rsplit(':').next().unwrap_or_default();
            assert!(
                exposed.contains(port),
                "{}: {key} port {port} is not in EXPOSE {exposed:?}",
                file.display()
            );
        }
    }
    Ok(())
}

/// One service of compose.yaml: its hostname, volumes and port mappings.
#[derive(Default, Debug)]
struct ComposeService {
    hostname: Option<String>,
    volumes: Vec<String>,
    ports: Vec<String>,
}

/// The services and top-level volumes of compose.yaml, read line by line
/// for the layout it uses (two-space indentation, block lists).
fn compose_file(text: &str) -> (BTreeMap<String, ComposeService>, BTreeSet<String>) {
    let mut services: BTreeMap<String, ComposeService> = BTreeMap::new();
    let mut volumes = BTreeSet::new();
    let (mut top, mut service, mut key) = (String::new(), String::new(), String::new());
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let unquote = |v: &str| v.trim().trim_matches('"').to_owned();
        match indent {
            0 => top = t.split(':').next().unwrap_or_default().to_owned(),
            2 if top == "services" => {
                service = t.trim_end_matches(':').to_owned();
                services.entry(service.clone()).or_default();
            }
            2 if top == "volumes" => {
                volumes.insert(t.split(':').next().unwrap_or_default().to_owned());
            }
            4 if top == "services" => {
                let (k, v) = t.split_once(':').unwrap_or((t, ""));
                key = k.to_owned();
                if k == "hostname"
                    && let Some(s) = services.get_mut(&service)
                {
                    s.hostname = Some(unquote(v));
                }
            }
            6 if top == "services" => {
                if let (Some(item), Some(s)) = (t.strip_prefix("- "), services.get_mut(&service)) {
                    match key.as_str() {
                        "volumes" => s.volumes.push(unquote(item)),
                        "ports" => s.ports.push(unquote(item)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (services, volumes)
}

/// Without a YAML parser: compose.yaml builds with the Containerfile, has
/// one service per province of deploy/provinces (named after the file),
/// each with its own volume at the node directory, publishing the API and
/// Federation API and metrics on the host's loopback only, on host ports
/// no other service uses.
#[test]
fn compose_has_every_province_with_its_volume_and_distinct_ports() -> Result<()> {
    let text = read(&repo("deploy/container/compose.yaml"))?;
    let dockerfile = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("dockerfile:"))
        .context("no build.dockerfile")?
        .trim();
    assert!(repo(dockerfile).is_file(), "{dockerfile} does not exist");
    let (services, volumes) = compose_file(&text);
    let mut expected = BTreeSet::new();
    let mut published: HashMap<String, String> = HashMap::new();
    let mut problems = Vec::new();
    for file in province_files()? {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .context("file name")?;
        let (code, slug) = stem.split_once('-').context("file name without a code")?;
        expected.insert(slug.to_owned());
        let Some(s) = services.get(slug) else {
            problems.push(format!("{code}: no service {slug}"));
            continue;
        };
        if s.hostname.as_deref() != Some(slug) {
            problems.push(format!("{slug}: hostname {:?}", s.hostname));
        }
        if s.volumes != [format!("{slug}:{PROD_DIR}")] {
            problems.push(format!(
                "{slug}: volumes {:?}, not its own volume at {PROD_DIR}",
                s.volumes
            ));
        }
        if !volumes.contains(slug) {
            problems.push(format!("no top-level volume {slug}"));
        }
        let mut container_ports = BTreeSet::new();
        for mapping in &s.ports {
            let parts: Vec<&str> = mapping.split(':').collect();
            let (host_ip, host, container) = match parts.as_slice() {
                [h, c] => (None, *h, *c),
                [ip, h, c] => (Some(*ip), *h, *c),
                _ => {
                    problems.push(format!("{slug}: port mapping {mapping:?}"));
                    continue;
                }
            };
            if !["7401", "7501", "9464"].contains(&container) {
                problems.push(format!(
                    "{slug}: {mapping}: the image serves no port {container}"
                ));
            }
            if container == "9464" && host_ip != Some("127.0.0.1") {
                problems.push(format!(
                    "{slug}: {mapping}: metrics are plain HTTP, publish them on 127.0.0.1 only"
                ));
            }
            container_ports.insert(container);
            if let Some(other) = published.insert(host.to_owned(), slug.to_owned()) {
                problems.push(format!(
                    "host port {host} is published by {other} and {slug}"
                ));
            }
        }
        for port in ["7401", "7501"] {
            if !container_ports.contains(port) {
                problems.push(format!("{slug} does not publish port {port}"));
            }
        }
    }
    let names: BTreeSet<String> = services.keys().cloned().collect();
    if names != expected {
        problems.push(format!(
            "services {names:?} are not the provinces of deploy/provinces {expected:?}"
        ));
    }
    assert_eq!(expected.len(), PROVINCES.len());
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    Ok(())
}

/// Metric names in a PromQL expression: identifiers starting with
/// `lienthong_`, outside string literals.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut word = String::new();
    let mut quote = None;
    for c in expr.chars().chain([' ']) {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                continue;
            }
            None if c == '"' || c == '\'' || c == '`' => {
                quote = Some(c);
                word.clear();
                continue;
            }
            None => {}
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            if word.starts_with("lienthong_") {
                out.insert(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    out
}

/// Every sample name a scrape can hold: the names of its samples, and for
/// each `# TYPE` line (families without samples yet) the names of that type.
fn exported_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (w.next(), w.next()) {
                let suffixes: &[&str] = match kind {
                    "counter" => &["_total", "_created"],
                    "histogram" => &["_bucket", "_sum", "_count", "_created"],
                    "summary" => &["", "_sum", "_count", "_created"],
                    _ => &[""],
                };
                names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// (where, expression) of every query in a Grafana dashboard: panel
/// targets (rows' nested panels too) and template variable queries.
fn dashboard_queries(d: &serde_json::Value) -> Vec<(String, String)> {
    fn panels(list: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("(untitled)");
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    let r = t["refId"].as_str().unwrap_or("?");
                    out.push((format!("panel {title:?} {r}"), e.to_owned()));
                }
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        let q = match &v["query"] {
            serde_json::Value::String(s) => Some(s.as_str()),
            o => o["query"].as_str(),
        };
        if let (Some(q), Some("query")) = (q, v["type"].as_str()) {
            let name = v["name"].as_str().unwrap_or("?");
            out.push((format!("variable {name}"), q.to_owned()));
        }
    }
    out
}

/// The Grafana dashboard queries only metrics a federated node exports
/// (per-peer series included), and every panel queries at least one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_uses_only_metrics_the_node_exports() -> Result<()> {
    let text = read(&repo("deploy/grafana/lienthong-dashboard.json"))?;
    let d: serde_json::Value = serde_json::from_str(&text).context("dashboard JSON")?;
    let schema = d["schemaVersion"].as_u64().context("no schemaVersion")?;
    ensure!((36..=41).contains(&schema), "schemaVersion {schema}");
    let variables: Vec<&str> = d["templating"]["list"]
        .as_array()
        .context("no templating")?
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    ensure!(
        variables.contains(&"DS_PROMETHEUS")
            && (variables.contains(&"instance") || variables.contains(&"member")),
        "variables {variables:?}"
    );
    // Every panel but rows has a query and uses the datasource variable.
    let mut problems = Vec::new();
    let mut stack: Vec<&serde_json::Value> = d["panels"]
        .as_array()
        .context("no panels")?
        .iter()
        .collect();
    let mut count = 0;
    while let Some(p) = stack.pop() {
        stack.extend(p["panels"].as_array().into_iter().flatten());
        if p["type"] == "row" {
            continue;
        }
        count += 1;
        let title = p["title"].as_str().unwrap_or("(untitled)");
        let targets = p["targets"].as_array().map(Vec::len).unwrap_or(0);
        if targets == 0 {
            problems.push(format!("panel {title:?} has no query"));
        }
        if p["datasource"]["uid"] != "${DS_PROMETHEUS}" {
            problems.push(format!("panel {title:?} does not use ${{DS_PROMETHEUS}}"));
        }
    }
    ensure!(count >= 8, "only {count} panels");

    // A real federated node's scrape, with every family populated: a
    // submission, peers (24 real and connected, 20 played by the test and
    // down), and evidence (20 shows 01 two histories of the same size).
    let mut f = lienthong_tests::federation(
        &[("01", "Hà Nội"), ("24", "Bắc Ninh"), ("20", "Lạng Sơn")],
        2,
        AGREEMENT_ALL,
    )?;
    let port = f.nodes[0].enable_metrics()?;
    f.nodes[0].start()?;
    f.nodes[1].start()?;
    f.nodes[0]
        .alerts()
        .await?
        .submit(lienthong_proto::v1::SubmitAlertRequest {
            alert: Some(lienthong_tests::sample_alert("dashboard-1")),
        })
        .await?;
    equivocate_to(&f, "20", "01").await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let scrape = loop {
        let s = http_get(port, "/metrics")?;
        let ready = [
            "lienthong_peer_connected{peer=\"24\"} 1",
            "lienthong_evidence_records{kind=\"equivocation\"}",
            "lienthong_submissions_total{outcome=\"stored\"}",
            "lienthong_peer_clock_offset_seconds{peer=\"24\"}",
        ]
        .iter()
        .all(|l| s.contains(l));
        if ready || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    let body = scrape.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let exported = exported_names(body);
    ensure!(
        exported.contains("lienthong_peer_replication_lag_entries"),
        "no per-peer series in the scrape:\n{scrape}"
    );
    let mut used = BTreeSet::new();
    for (place, expr) in dashboard_queries(&d) {
        let names = promql_metrics(&expr);
        if names.is_empty() {
            problems.push(format!("{place} queries no lienthong metric: {expr}"));
        }
        for n in names {
            if !exported.contains(&n) {
                problems.push(format!("{place}: {n} is not exported (in {expr})"));
            }
            used.insert(n);
        }
    }
    // The panels the issue asks for.
    for needed in [
        "lienthong_submissions_total",
        "lienthong_submit_seconds_bucket",
        "lienthong_group_commit_seconds_bucket",
        "lienthong_group_write_seconds_bucket",
        "lienthong_peer_replication_lag_entries",
        "lienthong_peer_connected",
        "lienthong_peer_cosigned_ours",
        "lienthong_store_bytes",
        "lienthong_peer_refused_deliveries_total",
        "lienthong_peer_clock_offset_seconds",
        "lienthong_checkpoint_timestamp_seconds",
        "lienthong_checkpoint_pending_entries",
        "lienthong_evidence_records",
    ] {
        if !used.contains(needed) {
            problems.push(format!("no panel uses {needed}"));
        }
    }
    assert!(
        problems.is_empty(),
        "\n{}\nexported: {exported:?}",
        problems.join("\n")
    );
    f.nodes[0].stop()?;
    f.nodes[1].stop()?;
    Ok(())
}

/// Member `rogue`, played by the test with its keys, shows `to` two
/// checkpoints of the same size with different roots: `to` cosigns the
/// first, refuses the second and keeps both as evidence of equivocation.
async fn equivocate_to(f: &lienthong_tests::Federation, rogue: &str, to: &str) -> Result<()> {
    use lienthong_log::{MemoryHashStore, NoteSigner, TreeHead, leaf_hash, sign_checkpoint};
    let node = f
        .nodes
        .iter()
        .find(|n| n.member == rogue)
        .context("no such member")?;
    let dir = node.path();
    let key =
        lienthong_core::keys::signing_key_from_pem(&read(&dir.join("keys/signing-key.pem"))?)?;
    let origin = format!("lienthong.example/bac-bo-11/{rogue}");
    let signer = NoteSigner::new(&origin, key)?;
    let note = |fork: u8| -> Result<String> {
        let mut t = MemoryHashStore::new();
        for i in 0..3u8 {
            t.append(leaf_hash(&[if i == 0 { 0 } else { fork }, i]))?;
        }
        Ok(sign_checkpoint(
            &TreeHead {
                origin: origin.clone(),
                size: t.size(),
                root: t.root()?,
            },
            &signer,
        )?)
    };
    let (endpoint, pin) = f.endpoint(to)?;
    let identity = lienthong_tests::peer::peer_identity(&dir)?;
    let mut client = lienthong_tests::peer::federation_client(&endpoint, &identity, pin).await?;
    client
        .add_checkpoint(lienthong_proto::v1::AddCheckpointRequest {
            old_size: 0,
            consistency_proof: vec![],
            checkpoint: note(1)?,
        })
        .await?;
    let second = client
        .add_checkpoint(lienthong_proto::v1::AddCheckpointRequest {
            old_size: 3,
            consistency_proof: vec![],
            checkpoint: note(2)?,
        })
        .await;
    ensure!(
        second.is_err(),
        "a second history of the same size was accepted"
    );
    Ok(())
}

/// Shell words of one line, roughly: quotes group, `#` starts a comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            (None, '#') if !started && cur.is_empty() => break,
            (None, c) => cur.push(c),
        }
    }
    if started || !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[test]
fn the_operator_docs_name_only_commands_that_exist() -> Result<()> {
    let mut cli = Cli::default();
    let top = cli.help(&[])?.to_owned();
    // A word `lienthong` (or a path ending in it) followed by one of these
    // starts a command line to check.
    let mut starts: BTreeSet<String> = section(&top, "Commands:")
        .iter()
        .filter_map(|c| c.split_whitespace().next().map(str::to_owned))
        .collect();
    starts.extend(
        section(&top, "Options:")
            .iter()
            .flat_map(|o| o.split_whitespace())
            .filter(|w| w.starts_with('-'))
            .map(|w| w.trim_end_matches(',').to_owned()),
    );
    let mut checked = 0;
    let mut failures = Vec::new();
    for doc in [
        "docs/operations.md",
        "deploy/systemd/README.md",
        "deploy/container/README.md",
    ] {
        let text = read(&repo(doc))?;
        let mut in_sh = false;
        let mut joined = String::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_sh = !in_sh && line.trim_start().trim_start_matches('`').starts_with("sh");
                continue;
            }
            if !in_sh {
                continue;
            }
            if let Some(part) = line.strip_suffix('\\') {
                joined.push_str(part);
                continue;
            }
            joined.push_str(line);
            let words = shell_words(&joined);
            joined.clear();
            for (i, w) in words.iter().enumerate() {
                let next = words.get(i + 1).map(String::as_str).unwrap_or_default();
                if !(w == "lienthong" || w.ends_with("/lienthong")) || !starts.contains(next) {
                    continue;
                }
                let args: Vec<&str> = words[i + 1..]
                    .iter()
                    .map(String::as_str)
                    .take_while(|a| !["|", ">", ">>", "<", "&&", "||", ";", "2>&1"].contains(a))
                    .collect();
                checked += 1;
                if let Err(e) = cli.check(&args) {
                    failures.push(format!("{doc}:{}: {e:#}", n + 1));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(checked >= 20, "only {checked} commands found in the docs");
    Ok(())
}
