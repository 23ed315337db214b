//! `softbusd` against a hostile local peer, as the real binary: what an unauthenticated client
//! of the TCP frame port, or a careless client of the control channel, must not be able to do.
//!
//! * Closed TCP links give their sockets back (none stays in CLOSE-WAIT), the number of links
//!   is bounded, and the listener survives running out of file descriptors.
//! * A control line without a line feed cannot make the daemon buffer without bound, and is
//!   answered `BAD_REQUEST` ([CTRL-18], [CTRL-20]); a line that is not UTF-8 is answered `BAD_REQUEST` and the
//!   connection goes on ([CTRL-1], [CTRL-2]).
//! * The trust store and the identity key are the owner's alone whatever the umask ([SEC-6], [SEC-7]).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use softbus::daemon::{MAX_LINE, MAX_TCP_LINKS};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const T: Duration = Duration::from_secs(10);

const CONFIG: &str = r#"
[device]
name = "hostile-dut"
identity_key = "id.key"
trust_store = "trust.json"

[listen]
udp = "127.0.0.1:0"
tcp = "127.0.0.1:0"

[discovery]
enabled = false

[control]
tcp = "127.0.0.1:0"
"#;

/// A daemon in a temporary directory, killed on drop.
struct Daemon {
    child: Child,
    bound: Value,
    dir: tempfile::TempDir,
}

impl Daemon {
    /// Start `softbusd` through `sh` with `prelude` run first (a `umask`, a `ulimit`).
    async fn start(prelude: &str, before: impl FnOnce(&Path)) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d.toml"), CONFIG).unwrap();
        before(dir.path());
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("{prelude}; exec \"$0\" --config d.toml"))
            .arg(env!("CARGO_BIN_EXE_softbusd"))
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(T, out.next_line())
            .await
            .expect("softbusd printed what it bound")
            .unwrap()
            .expect("softbusd exited at start");
        let bound: Value = serde_json::from_str(&line).unwrap();
        Daemon { child, bound, dir }
    }

    fn addr(&self, key: &str) -> String {
        self.bound[key].as_str().unwrap().to_string()
    }

    async fn control(&self) -> Control {
        let (r, w) = TcpStream::connect(self.addr("control"))
            .await
            .unwrap()
            .into_split();
        Control {
            r: BufReader::new(r),
            w,
        }
    }

    /// The number of file descriptors the daemon has open.
    fn fds(&self) -> usize {
        let pid = self.child.id().unwrap();
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    }

    /// A `VmHWM`/`VmRSS` figure of the daemon, in KiB.
    fn mem_kib(&self, key: &str) -> u64 {
        let pid = self.child.id().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

struct Control {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Control {
    async fn line(&mut self) -> Value {
        let mut l = String::new();
        tokio::time::timeout(T, self.r.read_line(&mut l))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(!l.is_empty(), "the daemon closed the control connection");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("answer {l:?} is not JSON: {e}"))
    }

    async fn call(&mut self, req: Value) -> Value {
        self.w
            .write_all(format!("{req}\n").as_bytes())
            .await
            .unwrap();
        self.line().await
    }

    async fn tcp_links(&mut self) -> Value {
        let s = self.call(json!({"id": "s", "op": "state"})).await;
        s["result"]["links"]["tcp"].clone()
    }
}

/// Poll `f` until it holds or `T` passes.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + T;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

#[tokio::test]
async fn closed_tcp_links_give_their_sockets_back() {
    let mut d = Daemon::start("true", |_| {}).await;
    let tcp = d.addr("tcp");
    let mut ctl = d.control().await;
    ctl.call(json!({"op": "hello"})).await;
    let before = d.fds();
    // Three rounds of 140, each waited out: a round stays under the link bound (256), so a
    // loaded daemon that sees closes late refuses none of them (refusal is tested below).
    let mut links = Value::Null;
    for round in 1..=3u64 {
        for i in 0..140 {
            let mut s = TcpStream::connect(&tcp).await.unwrap();
            if i % 2 == 0 {
                // A frame header's worth of junk first, as a peer that gave up mid-handshake.
                s.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
            }
            drop(s);
        }
        // Every link accepted and seen closed...
        for _ in 0..200 {
            links = ctl.tcp_links().await;
            if links["closed"].as_u64() >= Some(140 * round) && links["links"] == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(links["links"], 0, "round {round}: {links}");
        assert_eq!(links["closed"], 140 * round, "round {round}: {links}");
    }
    assert_eq!(links["max"], MAX_TCP_LINKS, "{links}");
    assert_eq!(links["refused"], 0, "{links}");
    // ...and its socket given back.
    let settled = eventually(|| d.fds() <= before + 2).await;
    assert!(
        settled,
        "420 closed links left {} descriptors open (before: {before})",
        d.fds()
    );
    assert!(d.alive());
}

#[tokio::test]
async fn tcp_links_are_bounded_and_the_listener_survives_running_out_of_descriptors() {
    // 64 descriptors: the daemon runs out long before the link bound, so accept() fails with
    // EMFILE while the connections are held.
    let mut d = Daemon::start("ulimit -n 64", |_| {}).await;
    let tcp = d.addr("tcp");
    let mut ctl = d.control().await;
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(TcpStream::connect(&tcp).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(d.alive());
    drop(held);
    // Once the descriptors are back, the port serves again: a new link is registered.
    let probe = TcpStream::connect(&tcp).await.unwrap();
    let mut up = false;
    for _ in 0..100 {
        let links = ctl.tcp_links().await;
        if links["links"].as_u64() == Some(1) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the TCP port no longer accepts links after EMFILE");
    drop(probe);

    // The bound, with descriptors to spare.
    let mut d = Daemon::start("ulimit -n 4096", |_| {}).await;
    let tcp = d.addr("tcp");
    let mut ctl = d.control().await;
    let mut held = Vec::new();
    for _ in 0..MAX_TCP_LINKS + 20 {
        held.push(TcpStream::connect(&tcp).await.unwrap());
    }
    let mut links = Value::Null;
    for _ in 0..100 {
        links = ctl.tcp_links().await;
        if links["refused"].as_u64() >= Some(20) && links["links"] == MAX_TCP_LINKS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(links["links"], MAX_TCP_LINKS, "{links}");
    assert_eq!(links["refused"], 20, "{links}");
    // A refused connection is closed by the daemon, not left hanging.
    let mut eof = 0;
    for s in held.iter_mut().rev().take(20) {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(T, s.read(&mut b)).await {
            eof += 1;
        }
    }
    assert_eq!(eof, 20, "every connection past the bound is closed");
    drop(held);
    assert!(eventually(|| d.fds() < 40).await, "{} fds", d.fds());
    assert!(d.alive());
}

#[tokio::test]
async fn an_endless_control_line_is_bounded_and_answered() {
    let mut d = Daemon::start("true", |_| {}).await;
    let mut ctl = d.control().await;
    ctl.call(json!({"op": "hello"})).await;
    let rss0 = d.mem_kib("VmRSS:");
    // 128 MiB without a line feed: four times the bound.
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0usize;
    while sent < 128 << 20 {
        ctl.w.write_all(&chunk).await.unwrap();
        sent += chunk.len();
    }
    let answer = ctl.line().await;
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["id"], Value::Null, "{answer}");
    assert_eq!(answer["error"]["code"], "BAD_REQUEST", "{answer}");
    // The line ends; the connection goes on.
    ctl.w.write_all(b"\n").await.unwrap();
    let hello = ctl.call(json!({"id": 7, "op": "hello"})).await;
    assert_eq!(
        (hello["id"].clone(), hello["ok"].clone()),
        (json!(7), json!(true))
    );
    let peak = d.mem_kib("VmHWM:");
    let bound_kib = (MAX_LINE as u64) / 1024;
    assert!(
        peak < rss0 + bound_kib + 16 * 1024,
        "peak {peak} KiB after 128 MiB without a line feed; {rss0} KiB before, bound {bound_kib} KiB"
    );
    assert!(d.alive());
}

#[tokio::test]
async fn a_control_line_that_is_not_utf8_is_a_bad_request_and_the_connection_goes_on() {
    let mut d = Daemon::start("true", |_| {}).await;
    let mut ctl = d.control().await;
    ctl.w
        .write_all(b"{\"id\":1,\"op\":\"hel\xff\xfelo\"}\n")
        .await
        .unwrap();
    let answer = ctl.line().await;
    assert_eq!(answer["error"]["code"], "BAD_REQUEST", "{answer}");
    assert_eq!(answer["id"], Value::Null, "{answer}");
    let hello = ctl.call(json!({"id": 2, "op": "hello"})).await;
    assert_eq!(hello["ok"], true, "{hello}");
    assert_eq!(hello["id"], 2, "{hello}");
    assert!(d.alive());
}

#[cfg(unix)]
#[tokio::test]
async fn trust_store_and_identity_key_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let d = Daemon::start("umask 000", |dir| {
        // A store left world-writable by an older version.
        let path = dir.join("trust.json");
        softbus::trust::TrustStore::new().save(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    })
    .await;
    assert_eq!(mode(&d.dir.path().join("id.key")), 0o600);
    let mut ctl = d.control().await;
    let r = ctl.call(json!({"op": "reset"})).await; // saves the store
    assert_eq!(r["ok"], true, "{r}");
    let trust = d.dir.path().join("trust.json");
    assert!(
        eventually(|| mode(&trust) == 0o600).await,
        "trust.json mode {:o}",
        mode(&trust)
    );
    assert!(!d.dir.path().join("trust.tmp").exists());
}
