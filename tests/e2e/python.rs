//! An outside client in another language (Python grpcio, stubs generated
//! from proto/) submits and reads. The packages come from
//! tests/python/requirements.txt, installed by tests/run.sh.

use std::process::Command;

use lienthong_tests::{Node, lienthong};

#[test]
fn a_python_grpc_client_submits_and_reads() -> anyhow::Result<()> {
    let mut node = Node::init("75", "Đồng Nai")?;
    node.start()?;
    let out = lienthong(&[
        "client",
        "add",
        "python-gateway",
        "--config",
        &node.config_arg(),
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let p = node.path();
    let out = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg(format!("{root}/tests/python/client_test.py"))
        .args(["--addr", &node.addr().to_string()])
        .args(["--ca", &p.join("tls/ca-cert.pem").display().to_string()])
        .args([
            "--cert",
            &p.join("clients/python-gateway-cert.pem")
                .display()
                .to_string(),
        ])
        .args([
            "--key",
            &p.join("clients/python-gateway-key.pem")
                .display()
                .to_string(),
        ])
        .args(["--proto", &format!("{root}/proto")])
        .output()?;
    assert!(
        out.status.success(),
        "python client failed (are tests/python/requirements.txt installed? tests/run.sh does it)\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
