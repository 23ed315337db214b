//! Tests of rig loading: the shipped rigs, each check's error message, placeholder rendering
//! and port allocation.

use super::launch::{helper_placeholders, HelperValue, LaunchVars};
use super::schema::{ControlEndpoint, DutKind, Rig, SerialLink};
use super::source::{key, parse_simple_path, render_path, Seg};
use super::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn rigs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rigs")
}

const MINIMAL: &str = r#"
[rig]
name = "t"

[[dut]]
name = "a"
kind = "external"

[dut.udp]
host = "192.0.2.7"
port = 40000

[dut.pics]
DISC_COAP = true
"#;

fn parse(text: &str) -> Result<Rig, RigError> {
    Rig::parse(text, "rigs/test.toml")
}

fn invalid(text: &str) -> (String, Option<usize>, String) {
    match parse(text) {
        Err(e @ RigError::Invalid { .. }) => {
            let msg = e.to_string();
            let RigError::Invalid { key, line, .. } = e else {
                unreachable!()
            };
            (key, line, msg)
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn loads_the_shipped_rigs() {
    let virt = Rig::load(rigs_dir().join("virtual.toml")).unwrap_or_else(|e| panic!("{e}"));
    let dut = virt.dut("reference").unwrap();
    assert_eq!(dut.kind, DutKind::Virtual);
    assert_eq!(dut.udp.as_ref().unwrap().port, 0);
    assert_eq!(dut.pixit.heartbeat_interval_ms, 200);
    assert_eq!(dut.pixit.prompt_timeout_ms, 1000);
    assert_eq!(dut.pixit.lockout_ms, 3000);
    assert_eq!(dut.capture.as_ref().unwrap().interface, "lo");
    let pics = virt.require_pics("reference").unwrap();
    assert!(pics.get("TRANSPORT_UDP"));
    assert!(pics.get("TRANSPORT_BLE") && pics.get("TRANSPORT_ZIGBEE"));
    assert_eq!(dut.zigbee.as_ref().unwrap().radio, "{znp_nodes_tester_pty}");
    assert_eq!(
        dut.ble.as_ref().unwrap().dbus.as_deref(),
        Some("{vbluez_dbus}")
    );
    assert_eq!(
        dut.pixit.latency_bound_on("zigbee"),
        Duration::from_millis(150)
    );
    assert_eq!(dut.pixit.latency_bound_on("udp"), Duration::from_millis(20));

    let lab = Rig::load(rigs_dir().join("example-lab.toml")).unwrap_or_else(|e| panic!("{e}"));
    let dut = lab.select_dut(None).unwrap();
    assert_eq!(dut.kind, DutKind::External);
    assert_eq!(
        dut.serial.as_ref().unwrap().path,
        PathBuf::from("/dev/ttyUSB2")
    );
    let z = dut
        .zigbee_resolved(&LaunchVars::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        (z.radio.as_str(), z.baud, z.address),
        ("/dev/ttyUSB0", 115_200, 0x1A2B)
    );
    assert_eq!(dut.serial.as_ref().unwrap().baud, 115_200);
    assert_eq!(
        dut.control_endpoint().unwrap(),
        ControlEndpoint::Serial(SerialLink {
            path: "/dev/ttyUSB1".into(),
            baud: 115_200
        })
    );
    assert!(dut.ble.as_ref().unwrap().address.is_some());
    assert_eq!(dut.capture.as_ref().unwrap().interface, "eth0");
    lab.require_pics(&dut.name).unwrap();
}

#[test]
fn virtual_rig_launches_with_and_without_fault() {
    let rig = Rig::load(rigs_dir().join("virtual.toml")).unwrap();
    let dut = rig.dut("reference").unwrap().allocate_ports().unwrap();
    let udp = dut.udp.as_ref().unwrap().port;
    let disc = dut.discovery.as_ref().unwrap().port;
    let ControlEndpoint::Tcp(ctl) = dut.control_endpoint().unwrap() else {
        panic!("virtual rig control should be tcp")
    };
    assert!(udp != 0 && disc != 0 && ctl.port != 0);
    assert!(udp != disc, "UDP ports must be distinct");
    let mut vars = LaunchVars {
        softbusd: "/bin/softbusd".into(),
        config: "/tmp/w/config.toml".into(),
        fault: Some("accept-replay".into()),
        workdir: "/tmp/w".into(),
        ..LaunchVars::default()
    };
    // The virtual Zigbee network and the virtual BlueZ are launched first.
    assert_eq!(dut.helpers().len(), 2);
    assert_eq!(dut.helpers()[0].name, "znp");
    assert_eq!(dut.helpers()[1].name, "vbluez");
    vars.znp_emulator = "/bin/znp-emulator".into();
    vars.vbluez = "/bin/vbluez".into();
    assert_eq!(
        dut.helper_command(0, &vars).unwrap(),
        [
            "/bin/znp-emulator",
            "--node",
            "dut",
            "--node",
            "tester",
            "--exit-on-stdin-eof"
        ]
    );
    let announced = serde_json::json!({
        "pty": "/dev/pts/9",
        "baud": 115200,
        "devices": [],
        "nodes": {
            "dut": {"pty": "/dev/pts/10", "nwk": 12098},
            "tester": {"pty": "/dev/pts/11", "nwk": 34656}
        }
    });
    vars.helpers
        .insert("znp".into(), Some(helper_placeholders("znp", &announced)));
    let argv = dut.helper_command(1, &vars).unwrap();
    assert_eq!(
        argv[..3],
        ["/bin/vbluez", "--bus-socket", "/tmp/w/../vbluez.bus"]
    );
    let announced = serde_json::json!({"dbus": "unix:path=/tmp/b", "radio": "/tmp/r.sock"});
    vars.helpers.insert(
        "vbluez".into(),
        Some(helper_placeholders("vbluez", &announced)),
    );
    assert_eq!(
        dut.launch_command(&vars).unwrap(),
        [
            "/bin/softbusd",
            "--config",
            "/tmp/w/config.toml",
            "--exit-on-stdin-eof",
            "--fault",
            "accept-replay"
        ]
    );
    vars.fault = None;
    assert_eq!(
        dut.launch_command(&vars).unwrap(),
        [
            "/bin/softbusd",
            "--config",
            "/tmp/w/config.toml",
            "--exit-on-stdin-eof"
        ]
    );
    let config = dut
        .launch_config(&vars)
        .unwrap()
        .expect("virtual rig has a config");
    let table: toml::Table = toml::from_str(&config).unwrap();
    let text = table.to_string();
    assert!(text.contains(&udp.to_string()), "{text}");
    assert!(!text.contains('{'), "placeholders left in {text}");
    assert_eq!(table["bridge"]["znp"].as_str(), Some("/dev/pts/9"));
    assert_eq!(table["bridge"]["baud"].as_integer(), Some(115_200));
    assert_eq!(table["zigbee"]["znp"].as_str(), Some("/dev/pts/10"));
    assert_eq!(table["ble"]["radio"].as_str(), Some("/tmp/r.sock"));
    let z = dut.zigbee_resolved(&vars).unwrap().unwrap();
    assert_eq!((z.radio.as_str(), z.address), ("/dev/pts/11", 12098));
    let b = dut.ble_resolved(&vars).unwrap().unwrap();
    assert_eq!(b.dbus.as_deref(), Some("unix:path=/tmp/b"));
    assert_eq!(b.name.as_deref(), Some("reference"));
}

#[test]
fn helper_announcements_become_placeholders() {
    let announced = serde_json::json!({
        "pty": "/dev/pts/3",
        "baud": 57600,
        "ok": true,
        "network": {"channel": 15, "pan_id": 6754},
        "devices": [{"nwk": 1}],
        "gone": null,
        "ratio": 0.5
    });
    let p = helper_placeholders("znp", &announced);
    assert_eq!(p["znp_pty"], HelperValue::Text("/dev/pts/3".into()));
    assert_eq!(p["znp_baud"], HelperValue::Int(57_600));
    assert_eq!(p["znp_ok"], HelperValue::Text("true".into()));
    assert_eq!(p["znp_network_channel"], HelperValue::Int(15));
    assert_eq!(p["znp_ratio"], HelperValue::Text("0.5".into()));
    assert!(!p.contains_key("znp_devices") && !p.contains_key("znp_gone"));

    let text = MINIMAL.replace("kind = \"external\"", "kind = \"virtual\"")
        + r#"
[dut.launch]
command = ["sbd", "--coordinator={znp_pty}"]
[[dut.launch.before]]
name = "znp"
command = ["{znp_emulator}", "--exit-on-stdin-eof"]
[[dut.launch.before]]
name = "sniffer"
command = ["sniff", "{znp_pty}"]
[dut.launch.config.bridge]
baud = "{znp_baud}"
"#;
    let rig = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let dut = &rig.duts[0];
    let mut vars = LaunchVars {
        znp_emulator: "emu".into(),
        ..LaunchVars::default()
    };
    assert_eq!(
        dut.helper_command(0, &vars).unwrap(),
        ["emu", "--exit-on-stdin-eof"]
    );
    vars.helpers.insert("znp".into(), Some(p));
    assert_eq!(
        dut.helper_command(1, &vars).unwrap(),
        ["sniff", "/dev/pts/3"]
    );
    assert_eq!(
        dut.launch_command(&vars).unwrap(),
        ["sbd", "--coordinator=/dev/pts/3"]
    );
    let cfg: toml::Table = toml::from_str(&dut.launch_config(&vars).unwrap().unwrap()).unwrap();
    assert_eq!(cfg["bridge"]["baud"].as_integer(), Some(57_600));

    // A field the helper did not announce is an error naming what it did announce.
    vars.helpers.insert(
        "znp".into(),
        Some(helper_placeholders("znp", &serde_json::json!({"baud": 1}))),
    );
    let e = dut.launch_command(&vars).unwrap_err().to_string();
    assert!(
        e.contains("launch.command[1]") && e.contains("{znp_baud}"),
        "{e}"
    );
}

#[test]
fn helpers_are_checked_at_load() {
    let base = MINIMAL.replace("kind = \"external\"", "kind = \"virtual\"")
        + "[dut.launch]\ncommand = [\"sbd\"]\n";
    let (key, _, msg) =
        invalid(&(base.clone() + "[[dut.launch.before]]\nname = \"Zn_p\"\ncommand = [\"x\"]\n"));
    assert_eq!(key, "dut[0].launch.before[0].name", "{msg}");
    let (key, _, msg) = invalid(
        &(base.clone()
            + "[[dut.launch.before]]\nname = \"a\"\ncommand = [\"x\"]\n\
               [[dut.launch.before]]\nname = \"a\"\ncommand = [\"y\"]\n"),
    );
    assert_eq!(key, "dut[0].launch.before[1].name", "{msg}");
    assert!(msg.contains("already used"), "{msg}");
    let (key, _, msg) =
        invalid(&(base.clone() + "[[dut.launch.before]]\nname = \"a\"\ncommand = []\n"));
    assert_eq!(key, "dut[0].launch.before[0].command", "{msg}");
    // A helper sees only the helpers before it, not itself.
    let (key, _, msg) = invalid(
        &(base.clone() + "[[dut.launch.before]]\nname = \"a\"\ncommand = [\"x\", \"{a_pty}\"]\n"),
    );
    assert_eq!(key, "dut[0].launch.before[0].command[1]", "{msg}");
    assert!(msg.contains("unknown placeholder {a_pty}"), "{msg}");
    let (key, _, msg) = invalid(&(base + "[dut.launch.config]\nport = \"{b_port}\"\n"));
    assert_eq!(key, "dut[0].launch.config.port", "{msg}");
}

#[test]
fn config_placeholders_become_typed_values() {
    let text = MINIMAL.replace("kind = \"external\"", "kind = \"virtual\"")
        + r#"
[dut.launch]
command = ["{softbusd}", "--fault={fault}", "--literal={{x}}"]
[dut.launch.config]
udp = { bind = "{udp_host}:{udp_port}", port = "{udp_port}" }
fault = "{fault}"
list = ["{pin}", "{fault}", 3]
"#;
    let rig = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let dut = &rig.duts[0];
    let vars = LaunchVars {
        softbusd: "sbd".into(),
        config: "c".into(),
        fault: None,
        workdir: "w".into(),
        ..LaunchVars::default()
    };
    assert_eq!(dut.launch_command(&vars).unwrap(), ["sbd", "--literal={x}"]);
    let cfg: toml::Table = toml::from_str(&dut.launch_config(&vars).unwrap().unwrap()).unwrap();
    assert_eq!(cfg["udp"]["port"].as_integer(), Some(40000));
    assert_eq!(cfg["udp"]["bind"].as_str(), Some("192.0.2.7:40000"));
    assert!(cfg.get("fault").is_none());
    assert_eq!(cfg["list"].as_array().unwrap().len(), 2);

    // A legal variant's settings are laid over the rendered config, creating tables as needed.
    let vars = LaunchVars {
        overrides: vec![
            ("udp.port".into(), toml::Value::Integer(1234)),
            ("device.mtu".into(), toml::Value::Integer(1024)),
        ],
        ..vars
    };
    let cfg: toml::Table = toml::from_str(&dut.launch_config(&vars).unwrap().unwrap()).unwrap();
    assert_eq!(cfg["udp"]["port"].as_integer(), Some(1234));
    assert_eq!(cfg["udp"]["bind"].as_str(), Some("192.0.2.7:40000"));
    assert_eq!(cfg["device"]["mtu"].as_integer(), Some(1024));
    let vars = LaunchVars {
        overrides: vec![("udp.bind.x".into(), toml::Value::Integer(1))],
        ..vars
    };
    let e = dut.launch_config(&vars).unwrap_err().to_string();
    assert!(
        e.contains("launch.config.udp.bind.x") && e.contains("`bind` is not a table"),
        "{e}"
    );
}

#[test]
fn typo_is_reported_with_key_path_and_line() {
    let text = MINIMAL.replace("port = 40000", "prot = 40000");
    let (key, line, msg) = invalid(&text);
    assert_eq!(key, "dut[0].udp.prot");
    assert_eq!(line, Some(11));
    assert!(
        msg.starts_with("rigs/test.toml:11:1: dut[0].udp.prot: unknown field"),
        "{msg}"
    );
    assert!(msg.contains("check the spelling"), "{msg}");
}

#[test]
fn wrong_type_and_missing_field_name_the_key() {
    let (key, line, msg) = invalid(&MINIMAL.replace("40000", "\"forty\""));
    assert_eq!((key.as_str(), line), ("dut[0].udp.port", Some(11)), "{msg}");
    let (key, _, msg) = invalid(&MINIMAL.replace("kind = \"external\"\n", ""));
    assert!(key.starts_with("dut[0]"), "{key}: {msg}");
    assert!(msg.contains("missing field `kind`"), "{msg}");
    let (key, _, msg) = invalid(&MINIMAL.replace("\"external\"", "\"externel\""));
    assert_eq!(key, "dut[0].kind", "{msg}");
}

#[test]
fn syntax_error_has_a_line() {
    let (_, line, msg) = invalid("[rig]\nname = \"x\"\n[[dut]\n");
    assert_eq!(line, Some(3), "{msg}");
}

#[test]
fn semantic_errors_name_key_line_and_fix() {
    let (key, line, msg) = invalid(&MINIMAL.replace("40000", "0"));
    assert_eq!((key.as_str(), line), ("dut[0].udp.port", Some(11)));
    assert!(msg.contains("only allowed on a virtual DUT"), "{msg}");

    let (key, _, msg) = invalid(&(MINIMAL.to_owned() + "[dut.pixit]\npin = \"12345\"\n"));
    assert_eq!(key, "dut[0].pixit.pin");
    assert!(msg.contains("6 digits"), "{msg}");

    let (key, line, msg) = invalid(
        &(MINIMAL.to_owned()
            + "\n[[dut]]\nname = \"a\"\nkind = \"external\"\n[dut.tcp]\nhost = \"h\"\nport = 1\n"),
    );
    assert_eq!((key.as_str(), line), ("dut[1].name", Some(17)), "{msg}");

    let (key, _, msg) =
        invalid(&(MINIMAL.to_owned() + "[dut.control]\nkind = \"tcp\"\naddress = \"nope\"\n"));
    assert_eq!(key, "dut[0].control.address");
    assert!(msg.contains("host:port"), "{msg}");

    let (key, _, _) = invalid(&(MINIMAL.to_owned() + "[dut.ble]\naddress = \"12:34\"\n"));
    assert_eq!(key, "dut[0].ble.address");

    let (key, _, msg) = invalid(&(MINIMAL.to_owned() + "[dut.launch]\ncommand = [\"x\"]\n"));
    assert_eq!(key, "dut[0].launch", "{msg}");

    let (key, _, msg) = invalid(&MINIMAL.replace("[dut.pics]\nDISC_COAP", "[dut.pics]\ndisc_coap"));
    assert!(key.starts_with("dut[0].pics"), "{key}");
    assert!(msg.contains("DISC_COAP"), "{msg}");
}

#[test]
fn launch_placeholders_are_checked_at_load() {
    let base = MINIMAL.replace("kind = \"external\"", "kind = \"virtual\"");
    let (key, _, msg) =
        invalid(&(base.clone() + "[dut.launch]\ncommand = [\"{softbusd}\", \"{nope}\"]\n"));
    assert_eq!(key, "dut[0].launch.command[1]", "{msg}");
    assert!(msg.contains("unknown placeholder {nope}"), "{msg}");
    let (key, _, msg) =
        invalid(&(base.clone() + "[dut.launch]\ncommand = [\"x\", \"{tcp_port}\"]\n"));
    assert_eq!(key, "dut[0].launch.command[1]");
    assert!(msg.contains("[dut.tcp]"), "{msg}");
    let (key, _, msg) = invalid(
        &(base + "[dut.launch]\ncommand = [\"x\"]\n[dut.launch.config.net]\nport = \"{oops\"\n"),
    );
    assert_eq!(key, "dut[0].launch.config.net.port", "{msg}");
}

#[test]
fn missing_or_empty_pics_refuses_to_run() {
    let no_pics = MINIMAL.replace("[dut.pics]\nDISC_COAP = true\n", "");
    let rig = parse(&no_pics).unwrap();
    let msg = rig.require_pics("a").unwrap_err().to_string();
    assert_eq!(
        msg,
        "refusing to run: DUT 'a' in rigs/test.toml has no [dut.pics] table; list the \
         features it implements, e.g. `DISC_COAP = true` (see rigs/example-lab.toml)"
    );
    let rig = parse(&MINIMAL.replace("DISC_COAP = true\n", "")).unwrap();
    let msg = rig.require_pics("a").unwrap_err().to_string();
    assert!(msg.contains("an empty [dut.pics] table"), "{msg}");
    assert!(matches!(
        rig.require_pics("zz"),
        Err(RigError::UnknownDut { .. })
    ));
}

#[test]
fn hash_ignores_comments_and_order() {
    let a = parse(MINIMAL).unwrap();
    let b = parse(&format!("# a comment\n{MINIMAL}")).unwrap();
    assert_eq!(a.hash(), b.hash());
    let c = parse(&MINIMAL.replace("40000", "40001")).unwrap();
    assert_ne!(a.hash(), c.hash());
}

#[test]
fn external_dut_ports_are_not_reallocated() {
    let rig = parse(MINIMAL).unwrap();
    let dut = rig.duts[0].allocate_ports().unwrap();
    assert_eq!(dut, rig.duts[0]);
}

#[test]
fn unreadable_file_names_the_path() {
    let msg = Rig::load("/nonexistent/rig.toml").unwrap_err().to_string();
    assert!(msg.contains("/nonexistent/rig.toml"), "{msg}");
}

#[test]
fn key_path_parser_round_trips() {
    let p = vec![
        key("launch"),
        key("config"),
        key("a b"),
        Seg::Index(2),
        key("c"),
    ];
    assert_eq!(parse_simple_path(&render_path(&p)), p);
}

#[test]
fn an_unknown_pics_name_is_refused_with_its_place_and_the_nearest_known_name() {
    let (key, line, msg) =
        invalid(&MINIMAL.replace("DISC_COAP = true", "DISC_COAP = true\nPREM = true"));
    assert_eq!(key, "dut[0].pics.PREM", "{msg}");
    assert_eq!(line, Some(15), "{msg}");
    assert!(msg.contains("rigs/test.toml"), "{msg}");
    assert!(msg.contains("unknown PICS name `PREM`"), "{msg}");
    assert!(msg.contains("did you mean `PERM`?"), "{msg}");
    // Far from every known name: the list instead.
    let (_, _, msg) = invalid(&MINIMAL.replace("DISC_COAP = true", "QUANTUM_TUNNEL = true"));
    assert!(msg.contains("the suite knows DISC_COAP, PAIR_PIN"), "{msg}");
}

/// MINIMAL with a second DUT `b` and `a` naming `partner` as its time partner.
fn with_partner(partner: &str, b_extra: &str) -> String {
    let text = MINIMAL.replace(
        "[dut.pics]\nDISC_COAP = true\n",
        &format!("[dut.pics]\nDISC_COAP = true\n\n[dut.pixit]\ntime_partner = \"{partner}\"\n"),
    );
    format!(
        "{text}\n[[dut]]\nname = \"b\"\nkind = \"external\"\n{b_extra}\n[dut.control]\nkind = \"tcp\"\naddress = \"192.0.2.8:7000\"\n\n[dut.pics]\nTIME = true\n"
    )
}

#[test]
fn a_time_partner_is_another_dut_with_udp_and_a_control_channel() {
    let udp = "\n[dut.udp]\nhost = \"192.0.2.8\"\nport = 40000\n";
    let rig = parse(&with_partner("b", udp)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rig.duts[0].pixit.time_partner.as_deref(), Some("b"));
    // Without --dut, the run certifies the DUT that is nobody's partner.
    assert_eq!(rig.select_dut(None).unwrap().name, "a");

    for (partner, extra, says) in [
        ("a", udp, "names this DUT itself"),
        (
            "c",
            udp,
            "names 'c', which is not a DUT of this rig (it has a, b)",
        ),
        (
            "b",
            "\n[dut.tcp]\nhost = \"192.0.2.8\"\nport = 40001\n",
            "names 'b', which has no [dut.udp]",
        ),
    ] {
        let (key, _, msg) = invalid(&with_partner(partner, extra));
        assert_eq!(key, "dut[0].pixit.time_partner", "{msg}");
        assert!(msg.contains(says), "{msg}");
    }
    let no_control = with_partner("b", udp).replace(
        "kind = \"tcp\"\naddress = \"192.0.2.8:7000\"",
        "kind = \"none\"",
    );
    let (key, _, msg) = invalid(&no_control);
    assert_eq!(key, "dut[0].pixit.time_partner", "{msg}");
    assert!(msg.contains("no control channel"), "{msg}");
}

#[test]
fn a_zigbee_radio_may_be_a_ser2net_url_and_a_bad_one_names_file_key_and_problem() {
    let with = |radio: &str| {
        MINIMAL.replace(
            "[dut.pics]",
            &format!("[dut.zigbee]\nradio = \"{radio}\"\naddress = 0x1A2B\n\n[dut.pics]"),
        )
    };
    for url in ["tcp://lab-host-3:3001", "rfc2217://[fd00::7]:4001"] {
        let rig = parse(&with(url)).unwrap_or_else(|e| panic!("{url}: {e}"));
        let z = rig.select_dut(None).unwrap().zigbee.clone().unwrap();
        assert_eq!(z.radio, url);
    }
    let (key, line, msg) = invalid(&with("rfc2217://lab-host-3"));
    assert_eq!(key, "dut[0].zigbee.radio", "{msg}");
    assert!(line.is_some(), "{msg}");
    assert!(
        msg.contains("rigs/test.toml")
            && msg.contains("\"rfc2217://lab-host-3\" has no port (HOST:PORT)")
            && msg.contains("\"tcp://HOST:PORT\" or \"rfc2217://HOST:PORT\""),
        "{msg}"
    );
    let (key, _, msg) = invalid(&with("telnet://lab-host-3:3001"));
    assert_eq!(key, "dut[0].zigbee.radio", "{msg}");
    assert!(msg.contains("unknown scheme \"telnet\""), "{msg}");
}

#[test]
fn a_serial_path_may_be_a_ser2net_url_and_a_bad_one_names_its_key() {
    let with = |path: &str| {
        MINIMAL.replace(
            "[dut.pics]",
            &format!("[dut.serial]\npath = \"{path}\"\n\n[dut.pics]"),
        )
    };
    let rig = parse(&with("rfc2217://lab-host-3:3001")).unwrap_or_else(|e| panic!("{e}"));
    let s = rig.select_dut(None).unwrap().serial.clone().unwrap();
    assert_eq!(s.path, PathBuf::from("rfc2217://lab-host-3:3001"));
    let (key, _, msg) = invalid(&with("tcp://lab-host-3:port"));
    assert_eq!(key, "dut[0].serial.path", "{msg}");
    assert!(
        msg.contains("has port \"port\", not a number in 1..=65535"),
        "{msg}"
    );
}
