//! The real binary: `httpscope watch` captures TLS plaintext by default next to its live
//! source, and `--no-tls` turns it off. An https server (python3's `http.server` wrapped by
//! `ssl`, OpenSSL) on 127.0.0.1 with a certificate made by the test, and curl as the client.
//!
//! Needs root, the TLS source's kernel features, openssl, python3 and curl; otherwise it
//! prints why and passes without checking anything. CI runs as root.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = r#"
import http.server, ssl, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

struct Server {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Server {
    fn start() -> Option<Server> {
        let dir = std::env::temp_dir().join(format!("hs-watch-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .output()
            .ok()?
            .status
            .success();
        if !ok {
            return None;
        }
        let mut child = Command::new("python3")
            .current_dir(&dir)
            .args(["-c", SERVER])
            .arg(dir.join("cert.pem"))
            .arg(dir.join("key.pem"))
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take()?)
            .read_line(&mut line)
            .ok()?;
        let port = line.trim().parse().ok()?;
        Some(Server { child, port, dir })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn skip_reason() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().map(|o| o.stdout);
    if uid.map_or(true, |u| String::from_utf8_lossy(&u).trim() != "0") {
        return Some("not root".into());
    }
    if Command::new("curl").arg("--version").output().is_err() {
        return Some("curl not installed".into());
    }
    None
}

/// Runs `watch --transactions` on the server's port with `extra` flags, makes three https
/// requests once it had time to attach, and returns (stdout, stderr).
fn watch(server: &Server, extra: &[&str]) -> (String, String) {
    let port = server.port.to_string();
    let mut w = Command::new(env!("CARGO_BIN_EXE_httpscope"))
        .args([
            "watch",
            "--transactions",
            "--duration",
            "7",
            "--port",
            &port,
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Loading and attaching both sources takes a moment (more on a loaded machine).
    std::thread::sleep(Duration::from_secs(4));
    for _ in 0..3 {
        let st = Command::new("curl")
            .args(["-sk", "-o", "/dev/null"])
            .arg(format!("https://127.0.0.1:{port}/no-such-file"))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let t0 = Instant::now();
    while w.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(30), "watch did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = w.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn watch_captures_tls_by_default_and_no_tls_turns_it_off() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let Some(server) = Server::start() else {
        eprintln!("skipping: could not start the python3 https server (openssl, python3)");
        return;
    };
    let (out, err) = watch(&server, &[]);
    if err.contains("TLS plaintext capture unavailable") {
        eprintln!("skipping: {err}");
        return;
    }
    assert!(err.contains("also capturing TLS plaintext"), "{err}");
    let txs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let tls: Vec<&serde_json::Value> = txs.iter().filter(|t| t["source"] == "tls").collect();
    for side in ["client", "server"] {
        let n = tls
            .iter()
            .filter(|t| {
                t["side"] == side
                    && t["path"] == "/no-such-file"
                    && t["status"] == 404
                    && t["tags"]["tls_library"] == "openssl"
                    && t["pid"].is_u64()
            })
            .count();
        assert_eq!(n, 3, "{side} side: {out}\n{err}");
    }
    // The encrypted bytes never became transactions of another source.
    assert_eq!(tls.len(), txs.len(), "{out}");

    let (out, err) = watch(&server, &["--no-tls"]);
    assert!(err.contains("TLS capture off"), "{err}");
    assert!(
        out.lines().all(|l| !l.contains("\"source\":\"tls\"")),
        "{out}"
    );
    assert!(
        out.lines().all(|l| !l.contains("no-such-file")),
        "the socket path showed the encrypted exchange: {out}"
    );
}
