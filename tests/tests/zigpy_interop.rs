//! Zigbee interop: zigpy-znp, the Z-Stack host library behind Home Assistant's ZHA, drives the
//! kit's virtual coordinator (`znp-emulator`, a CC2652 on Z-Stack 3.30 as seen over serial)
//! through a real PTY, and must get through its whole startup exchange as with real hardware.
//!
//! zigpy-znp comes from PyPI into `target/interop-venv` (created with `python3 -m venv`; Debian's
//! `python3-venv` is installed when running as root, otherwise the test fails with the command
//! that installs it). The Python side is `tests/interop/zigpy_startup.py`; it prints one JSON
//! object, which this test checks against what the emulator announced.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use softbus_e2e::{binary, output_within, require_pip_tool, workspace_root};

/// The versions the script was written against; pinned so a new release cannot change what
/// the test means without someone looking.
const ZIGPY: &str = "zigpy==2.4.0";
const ZIGPY_ZNP: &str = "zigpy-znp==1.1.1";
const BAUD: u32 = 115_200;

/// The emulator process; killed when dropped.
struct Emulator {
    child: Child,
    announced: Value,
}

impl Emulator {
    fn start() -> anyhow::Result<Emulator> {
        let exe = binary("softbus-harness", "znp-emulator")?;
        let mut child = Command::new(exe)
            .args(["--baud", &BAUD.to_string(), "--exit-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let announced = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("znp-emulator start line {line:?}: {e}"))?;
        Ok(Emulator { child, announced })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex_u16(v: &Value) -> String {
    format!("{:#06x}", v.as_u64().unwrap_or_default())
}

#[test]
fn zigpy_znp_starts_up_against_the_virtual_coordinator() -> anyhow::Result<()> {
    // Pin zigpy first so that installing zigpy-znp keeps it.
    require_pip_tool("python", ZIGPY)?;
    let python = require_pip_tool("python", ZIGPY_ZNP)?;
    let emu = Emulator::start()?;
    let a = &emu.announced;
    let pty = a["pty"].as_str().unwrap_or_default().to_string();
    let device = |name: &str| {
        a["devices"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["name"] == name))
            .map(|d| hex_u16(&d["nwk"]))
            .unwrap_or_default()
    };
    let script = workspace_root().join("tests/interop/zigpy_startup.py");
    let out = output_within(
        Command::new(&python)
            .arg(&script)
            .arg(&pty)
            .args(["--baud", &BAUD.to_string()])
            .args([
                "--light",
                &device("light"),
                "--sensor",
                &device("temperature"),
            ]),
        Duration::from_secs(150),
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "zigpy_startup.py failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    let r: Value = serde_json::from_str(stdout.trim())
        .map_err(|e| anyhow::anyhow!("zigpy_startup.py output {stdout:?}: {e}"))?;
    println!("zigpy-znp against znp-emulator: {r}");

    assert_eq!(r["zigpy_znp"], ZIGPY_ZNP.trim_start_matches("zigpy-znp=="));
    // connect(): ping, struct alignment probe, Z-Stack version detection.
    assert_eq!(r["capabilities"], 0x0659, "SYS|AF|ZDO|UTIL|GP|APP_CNF");
    assert_eq!(r["ping_capabilities"], r["capabilities"]);
    assert_eq!(
        r["align_structs"], true,
        "a CC2652 lays structs out aligned"
    );
    assert_eq!(r["zstack"], 3.3, "detected as Z-Stack 3.30");
    // SYS_VERSION and UTIL_GET_DEVICE_INFO as parsed by zigpy-znp.
    let v = &r["version"];
    assert_eq!(
        [
            &v["transport_rev"],
            &v["product_id"],
            &v["major"],
            &v["minor"],
            &v["maint"]
        ],
        [2, 1, 2, 7, 1]
    );
    assert!(
        v["code_revision"].as_u64().unwrap_or(0) >= 20_200_000,
        "{v}"
    );
    let info = &r["device_info"];
    assert_eq!(info["status"], 0);
    assert_eq!(info["ieee"], a["ieee"]);
    assert_eq!(
        info["nwk"], 0xFFFE,
        "not on the network before it is started"
    );
    assert_eq!(info["device_type"], 7);
    assert_eq!(info["state"], 0);
    // The network parameters zigpy-znp reads out of NV (NIB, keys, frame counter).
    let net = &r["network"];
    assert_eq!(net["channel"], a["network"]["channel"]);
    assert_eq!(net["pan_id"], a["network"]["pan_id"]);
    assert_eq!(net["extended_pan_id"], a["network"]["extended_pan_id"]);
    assert_eq!(net["coordinator_ieee"], a["ieee"]);
    assert_eq!(net["model"], "CC2652");
    assert_eq!(net["nwk_frame_counter"], 2500);
    // BDB commissioning restores the network: started as coordinator at 0x0000.
    assert_eq!(r["started"]["state"], 9);
    assert_eq!(r["started"]["nwk"], 0);
    // ZCL built and parsed by zigpy against the simulated devices.
    let zcl = &r["zcl"];
    assert_eq!(zcl["light_on_before"], false);
    assert_eq!(zcl["toggle_default_response_status"], 0);
    assert_eq!(zcl["light_on_after"], true);
    let centi = zcl["temperature_centi_c"].as_i64().unwrap_or(i64::MIN);
    assert!((1_000..=3_500).contains(&centi), "temperature {centi}");
    Ok(())
}
