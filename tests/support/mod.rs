//! What the end-to-end tests share: fixed keys, and terminals provisioned over the wire
//! through the admin terminal (SPEC §5.17), each with a key derived from the admin's.

#![allow(dead_code)] // each test file uses part of it

pub mod desk;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use cardswitch::keys::{Credential, MasterKey};
use cardswitch::server::{Config, Keys};
use protocol::client::Client;
use protocol::{CardNo, Category, Request, ResponseCode, TerminalKey, TerminalRole, Verification};

/// Trace numbers of the admin's own requests: far above what the tests use, never reused.
static ADMIN_STAN: AtomicU32 = AtomicU32::new(3_000_000_000);

/// A switch in `dir` with two partitions and the tests' keys, listening on a free port.
pub fn config(dir: &Path) -> Config {
    let mut config = Config::new(dir.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    config.partitions = 2;
    config.keys = keys();
    config
}

/// The keys of every switch the tests start in process.
pub fn keys() -> Keys {
    Keys { master: MasterKey::from_bytes([0x11; 32]), admin: admin() }
}

/// The admin credential those switches provision.
pub fn admin() -> Credential {
    Credential { terminal_id: 1, key: TerminalKey::from_bytes([0x22; 32]) }
}

/// The key of `terminal_id`: the admin's own, or the one derived from it.
pub fn key_of(admin: &Credential, terminal_id: u32) -> TerminalKey {
    if terminal_id == admin.terminal_id {
        admin.key.clone()
    } else {
        admin.derive_terminal_key(terminal_id)
    }
}

/// Provisions `terminal_id` at `store_id` with `role` and its derived key, as `admin`.
pub async fn provision_as(addr: SocketAddr, admin: &Credential, terminal_id: u32, store_id: u32, role: TerminalRole) {
    let mut client = Client::connect_with_key(addr, admin.terminal_id, admin.key.clone()).await.unwrap();
    let sign_on_stan = ADMIN_STAN.fetch_add(1, Ordering::Relaxed);
    assert_eq!(client.sign_on(sign_on_stan, store_id.max(1)).await.unwrap().code, ResponseCode::Approved);
    let stan = ADMIN_STAN.fetch_add(1, Ordering::Relaxed);
    let reply = client.provision(stan, terminal_id, store_id, role, &key_of(admin, terminal_id)).await.unwrap();
    assert_eq!(reply.code, ResponseCode::Approved, "provisioning {terminal_id}");
}

/// Provisions `terminal_id` (an admin of `store_id`, so it may also import ranges) unless it
/// is the admin terminal itself, and connects as it.
pub async fn connect(addr: SocketAddr, terminal_id: u32, store_id: u32) -> Client {
    connect_as(addr, &admin(), terminal_id, store_id).await
}

/// [`connect`] for a switch whose admin credential is `admin`.
pub async fn connect_as(addr: SocketAddr, admin: &Credential, terminal_id: u32, store_id: u32) -> Client {
    if terminal_id != admin.terminal_id {
        provision_as(addr, admin, terminal_id, store_id, TerminalRole::Admin).await;
    }
    Client::connect_with_key(addr, terminal_id, key_of(admin, terminal_id)).await.unwrap()
}

/// Starts the `cardswitch` binary at `binary` on `data` with two partitions and the tests'
/// fixed keys (written to `data/keys`), and waits for its `listening on ADDR` line. With
/// `max_file_bytes`, no file it writes may grow past that size (`RLIMIT_FSIZE`): a disk that
/// fills up. Its log goes to `data/keys/switch.log`.
pub fn start_binary(binary: &str, data: &Path, max_file_bytes: Option<u64>) -> (Child, SocketAddr) {
    start_binary_with(binary, data, max_file_bytes, &[], &[])
}

/// [`start_binary`] with more arguments for `serve` and more environment variables.
pub fn start_binary_with(
    binary: &str,
    data: &Path,
    max_file_bytes: Option<u64>,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Child, SocketAddr) {
    let key_dir = data.join("keys");
    std::fs::create_dir_all(&key_dir).unwrap();
    let master = format!("{}\n", TerminalKey::from_bytes([0x11; 32]).to_hex());
    std::fs::write(key_dir.join("master.key"), master).unwrap();
    std::fs::write(key_dir.join("admin.key"), admin().to_text()).unwrap();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(key_dir.join("switch.log")).unwrap();
    let mut command = Command::new(binary);
    command
        .args(["serve", "--data"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--partitions", "2"])
        .arg("--master-key-file")
        .arg(key_dir.join("master.key"))
        .arg("--admin-key-file")
        .arg(key_dir.join("admin.key"))
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log);
    if let Some(limit) = max_file_bytes {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only async-signal-safe calls: setrlimit and signal.
        unsafe {
            command.pre_exec(move || {
                // Writing past the limit must fail with EFBIG, not kill the process.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().expect("the cardswitch binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (child, addr.parse().unwrap())
}

/// A GET over HTTP/1.1 (the switch's `/metrics` and `/health`): the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: switch\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, text.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

/// A retail sale of `amount_minor` on `card`, without PIN or approver.
pub fn sale(card: CardNo, amount_minor: i64) -> Request {
    Request::Sale { card, amount_minor, category: Category::Retail as u8, flags: 0, verification: Verification::NONE }
}

/// Runs the `cardswitch` binary with `args` off the async runtime: its exit status, standard
/// output and standard error.
pub async fn run_cardswitch(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_cardswitch")).args(&args).output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
    })
    .await
    .unwrap()
}
