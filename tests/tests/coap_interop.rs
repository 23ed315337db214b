//! Discovery interop: off-the-shelf CoAP clients query a running `softbusd` (spec section 3,
//! [DISC-2], [DISC-3], [DISC-6], [DISC-7], [DISC-8], [DISC-11]).
//!
//! - libcoap's `coap-client-notls` (Debian package `libcoap3-bin`), over CON and NON;
//! - aiocoap's `aiocoap-client` (PyPI `aiocoap`, installed into `target/interop-venv`).
//!
//! Missing tools are installed when the tests run as root; otherwise the tests fail with the
//! command that installs them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use softbus::discovery::Advert;
use softbus_e2e::{loopback_config, output_within, require_debian_tool, require_pip_tool, Daemon};

const LINK_FORMAT: &str = r#"</softbus/v1/device>;rt="softbus.device";ct=60"#;
const AIOCOAP: &str = "aiocoap==0.4.17";
const T: Duration = Duration::from_secs(30);

/// A daemon named `name` and its unicast CoAP address.
fn daemon(name: &str, port_offset: u32) -> (Daemon, SocketAddr) {
    let disc_port = 20000 + ((std::process::id() + port_offset) % 20000) as u16;
    let d = Daemon::spawn(&loopback_config(name, Some("135790"), disc_port), None)
        .expect("softbusd starts");
    let coap = d
        .addr("coap")
        .expect("softbusd reports its unicast CoAP address");
    (d, coap)
}

/// Check that `cbor` is the advert of daemon `d` named `name`.
fn check_advert(cbor: &[u8], d: &Daemon, name: &str) {
    let a = Advert::from_cbor(cbor)
        .unwrap_or_else(|e| panic!("advert does not decode ({e}): {cbor:02x?}"));
    a.check_device_id()
        .expect("the advert's id derives from its pk");
    let id: String = a.id.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(Some(id.as_str()), d.bound["device_id"].as_str());
    assert_eq!(a.name, name);
    assert_eq!(a.device_type, "speaker");
    assert_eq!(a.caps, vec!["speaker".to_string()]);
    assert_eq!(Some(a.port), d.addr("udp").ok().map(|u| u.port()));
    assert_eq!(a.hb, 200);
    assert_eq!(a.pt, 1000);
    assert!(a.pair, "a PIN is configured");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn libcoap() -> PathBuf {
    require_debian_tool("coap-client-notls", "libcoap3-bin").unwrap_or_else(|e| panic!("{e:#}"))
}

/// Run `coap-client-notls` with debug logging (which prints the response's header) and its
/// payload written to `payload_file`.
fn coap_client(args: &[&str], url: &str, payload_file: &Path) -> Output {
    let _ = std::fs::remove_file(payload_file);
    let mut cmd = Command::new(libcoap());
    cmd.args(["-v", "7", "-B", "10"])
        .args(args)
        .arg("-o")
        .arg(payload_file)
        .arg(url);
    output_within(&mut cmd, T).expect("running coap-client-notls")
}

#[test]
fn libcoap_client_gets_the_advert_and_well_known_core() {
    let (d, coap) = daemon("libcoap-dut", 101);
    let dir = tempfile::tempdir().expect("tempdir");
    let payload = dir.path().join("payload");
    let device = format!("coap://{coap}/softbus/v1/device");

    // CON GET: a piggybacked 2.05 in an ACK, Content-Format 60, the advert as payload.
    let out = coap_client(&["-m", "get"], &device, &payload);
    let log = text(&out.stdout) + &text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("t:ACK c:2.05"),
        "no piggybacked 2.05 Content: {log}"
    );
    assert!(log.contains("Content-Format:application/cbor"), "{log}");
    check_advert(
        &std::fs::read(&payload).expect("payload written"),
        &d,
        "libcoap-dut",
    );

    // NON GET: a NON 2.05.
    let out = coap_client(&["-m", "get", "-N"], &device, &payload);
    let log = text(&out.stdout) + &text(&out.stderr);
    assert!(log.contains("t:NON c:2.05"), "no NON 2.05 Content: {log}");
    check_advert(
        &std::fs::read(&payload).expect("payload written"),
        &d,
        "libcoap-dut",
    );

    // A matching capability filter, and one the device does not match (4.04 on unicast).
    let out = coap_client(&["-m", "get"], &format!("{device}?cap=speaker"), &payload);
    assert!(
        text(&out.stdout).contains("c:2.05"),
        "{}",
        text(&out.stdout)
    );
    let out = coap_client(&["-m", "get"], &format!("{device}?cap=camera"), &payload);
    assert!(
        text(&out.stdout).contains("c:4.04"),
        "{}",
        text(&out.stdout)
    );

    // /.well-known/core: the link to the device resource, Content-Format 40.
    let out = coap_client(
        &["-m", "get"],
        &format!("coap://{coap}/.well-known/core"),
        &payload,
    );
    let log = text(&out.stdout);
    assert!(
        log.contains("c:2.05") && log.contains("Content-Format:application/link-format"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(&payload).expect("payload written"),
        LINK_FORMAT
    );

    // Other paths and methods.
    let out = coap_client(
        &["-m", "get"],
        &format!("coap://{coap}/softbus/v1/nothing"),
        &payload,
    );
    assert!(
        text(&out.stdout).contains("c:4.04"),
        "{}",
        text(&out.stdout)
    );
    let out = coap_client(&["-m", "put", "-e", "x"], &device, &payload);
    assert!(
        text(&out.stdout).contains("c:4.05"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn aiocoap_client_gets_the_advert_and_well_known_core() {
    let client = require_pip_tool("aiocoap-client", AIOCOAP).unwrap_or_else(|e| panic!("{e:#}"));
    let (d, coap) = daemon("aiocoap-dut", 202);
    let run = |args: &[&str]| {
        let mut cmd = Command::new(&client);
        cmd.args(args).env("PYTHONDONTWRITEBYTECODE", "1");
        output_within(&mut cmd, T).expect("running aiocoap-client")
    };

    // The advert: raw CBOR on stdout (not a terminal), the response logged with -v.
    for non in [false, true] {
        let url = format!("coap://{coap}/softbus/v1/device");
        let mut args = vec!["-v", "--no-pretty-print"];
        if non {
            args.push("--non");
        }
        args.push(&url);
        let out = run(&args);
        let log = text(&out.stderr);
        assert!(out.status.success(), "aiocoap-client failed: {log}");
        assert!(log.contains("2.05 Content"), "{log}");
        assert!(log.contains("application/cbor"), "{log}");
        check_advert(&out.stdout, &d, "aiocoap-dut");
    }

    // /.well-known/core.
    let out = run(&["-v", &format!("coap://{coap}/.well-known/core")]);
    let log = text(&out.stderr);
    assert!(out.status.success(), "aiocoap-client failed: {log}");
    assert!(
        log.contains("2.05 Content") && log.contains("application/link-format"),
        "{log}"
    );
    assert_eq!(text(&out.stdout).trim_end_matches('\n'), LINK_FORMAT);

    // An unknown resource: 4.04 and a failing exit status.
    let out = run(&[&format!("coap://{coap}/nothing/here")]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("4.04"), "{}", text(&out.stderr));
}
