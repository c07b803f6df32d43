//! `cardswitch serve --config FILE` and `cardswitch config check FILE` with the real binary: the
//! file sets what it names (paths taken from its directory), a flag overrides it, and a bad file
//! is refused with every problem named by its key.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn a_configuration_file_starts_the_switch_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/catalogs/hotel.toml");
    let file = dir.path().join("cardswitch.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:1\"\ndata = \"data\"\npartitions = 1\n\n[secrets]\n\
             master_key_file = \"master.key\"\nadmin_key_file = \"admin.key\"\n\n[rules]\ncatalog = \"{catalog}\"\n"
        ),
    )
    .unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_cardswitch")).args(["config", "check"]).arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // Port 1 of the file is overridden by the flag; the logs are JSON lines.
    let log = dir.path().join("switch.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(["serve", "--config"])
        .arg(&file)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "info"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr: std::net::SocketAddr = line.trim().strip_prefix("listening on ").unwrap().parse().unwrap();
    assert_ne!(addr.port(), 1);
    assert!(std::net::TcpStream::connect(addr).is_ok());
    // The data directory and the keys are where the file says, beside it.
    assert!(dir.path().join("data/log").is_dir() && dir.path().join("master.key").is_file());
    child.kill().unwrap();
    child.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.lines().count() >= 3, "{logged}");
    assert!(logged.lines().all(|l| l.starts_with("{\"timestamp\":") && l.ends_with('}')), "{logged}");
    assert!(logged.contains("\"message\":\"recovered\""), "{logged}");

    std::fs::write(&file, "[server]\npartitions = 0\nlisten = \"here\"\n").unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_cardswitch")).args(["config", "check"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("server.partitions: must be between 1 and 256, not 0"), "{stderr}");
    assert!(stderr.contains("server.listen: `here`"), "{stderr}");
    let serve = Command::new(env!("CARGO_BIN_EXE_cardswitch")).args(["serve", "--config"]).arg(&file).output().unwrap();
    assert_eq!(serve.status.code(), Some(1), "a bad file does not start the switch");
}
