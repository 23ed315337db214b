//! System prerequisites shared by the commands that build or run the harness: the Debian
//! packages `libpcap-dev` (the `pcap` crate links libpcap), `tshark` (capture checks and the
//! Wireshark dissector), `pkg-config` (finds libpcap at build time), `libcoap3-bin` (an
//! off-the-shelf CoAP client for the discovery interop test), `dbus-daemon` (the private bus
//! the virtual BlueZ serves `org.bluez` on; libdbus itself is built in, vendored) and `ser2net`
//! (the serial server labs share Zigbee sticks with; `tests/tests/ser2net.rs` runs the Zigbee
//! link through it over `tcp://` and `rfc2217://`).
//!
//! When one is missing and xtask runs as root (`id -u` is 0, as in CI), it runs
//! `apt-get update` and `apt-get install -y ...` with `DEBIAN_FRONTEND=noninteractive`. As any
//! other user it installs nothing and exits 2 with the exact `sudo apt-get install` command to
//! run. Set `XTASK_SKIP_SETUP=1` to skip the check on machines that provide these otherwise.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// Set to skip the prerequisite check.
pub const SKIP_ENV: &str = "XTASK_SKIP_SETUP";

/// A system package the kit needs, and how to tell it is present.
#[derive(Debug, Clone, Copy)]
pub struct Prerequisite {
    /// The Debian package name.
    pub package: &'static str,
    /// How to tell it is installed.
    pub probe: Probe,
}

/// How to tell that a prerequisite is installed.
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// An executable on `PATH`.
    Command(&'static str),
    /// A development library: installed per dpkg, or known to pkg-config under this name.
    Library(&'static str),
    /// A package installed per dpkg (a daemon in `/usr/sbin`, off a user's `PATH`).
    Package,
}

/// Everything the kit needs from the system.
pub const PREREQUISITES: &[Prerequisite] = &[
    Prerequisite {
        package: "libpcap-dev",
        probe: Probe::Library("libpcap"),
    },
    Prerequisite {
        package: "tshark",
        probe: Probe::Command("tshark"),
    },
    Prerequisite {
        package: "pkg-config",
        probe: Probe::Command("pkg-config"),
    },
    Prerequisite {
        package: "libcoap3-bin",
        probe: Probe::Command("coap-client-notls"),
    },
    Prerequisite {
        package: "dbus-daemon",
        probe: Probe::Command("dbus-daemon"),
    },
    Prerequisite {
        package: "ser2net",
        probe: Probe::Package,
    },
];

/// What to do about missing packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Everything is there.
    Nothing,
    /// Install these packages (we are root).
    Install(Vec<&'static str>),
    /// Tell the user the command to run, and stop.
    AskUser(String),
}

/// The decision, given what is missing and whether we are root.
pub fn plan(missing: &[&'static str], is_root: bool) -> Plan {
    if missing.is_empty() {
        Plan::Nothing
    } else if is_root {
        Plan::Install(missing.to_vec())
    } else {
        Plan::AskUser(format!(
            "missing system packages: {}.\nInstall them with:\n\n    sudo apt-get install -y {}\n\nthen run the command again \
             (or set {SKIP_ENV}=1 if your system provides them otherwise).",
            missing.join(", "),
            missing.join(" ")
        ))
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(program))))
        .unwrap_or(false)
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

fn quietly_succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
        .unwrap_or(false)
}

fn present(p: &Prerequisite) -> bool {
    match p.probe {
        Probe::Command(c) => on_path(c),
        Probe::Library(lib) => {
            dpkg_installed(p.package)
                || quietly_succeeds(Command::new("pkg-config").args(["--exists", lib]))
        }
        Probe::Package => dpkg_installed(p.package),
    }
}

/// The Debian packages not installed here.
pub fn missing() -> Vec<&'static str> {
    PREREQUISITES
        .iter()
        .filter(|p| !present(p))
        .map(|p| p.package)
        .collect()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn apt_get(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("could not run apt-get (is this a Debian or Ubuntu system?)")?;
    if !status.success() {
        bail!("`apt-get {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Make sure the prerequisites are installed, installing them as root.
///
/// As a non-root user with packages missing, prints the command to run and exits 2.
pub fn ensure() -> anyhow::Result<()> {
    if std::env::var_os(SKIP_ENV).is_some() {
        return Ok(());
    }
    match plan(&missing(), is_root()) {
        Plan::Nothing => Ok(()),
        Plan::Install(packages) => {
            eprintln!("xtask: installing {}", packages.join(" "));
            apt_get(&["update", "-qq"])?;
            let mut args = vec!["install", "-y", "-qq"];
            args.extend(&packages);
            apt_get(&args)?;
            let still = missing();
            if !still.is_empty() {
                bail!("still missing after apt-get install: {}", still.join(", "));
            }
            Ok(())
        }
        Plan::AskUser(message) => {
            eprintln!("xtask: {message}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_missing_means_nothing_to_do() {
        assert_eq!(plan(&[], false), Plan::Nothing);
        assert_eq!(plan(&[], true), Plan::Nothing);
    }

    #[test]
    fn root_installs_what_is_missing() {
        assert_eq!(
            plan(&["tshark", "pkg-config"], true),
            Plan::Install(vec!["tshark", "pkg-config"])
        );
    }

    #[test]
    fn other_users_get_the_exact_command() {
        let Plan::AskUser(message) = plan(&["libpcap-dev", "tshark"], false) else {
            panic!("a non-root user is asked")
        };
        assert!(
            message.contains("sudo apt-get install -y libpcap-dev tshark\n"),
            "{message}"
        );
    }

    #[test]
    fn the_prerequisites_are_the_debian_packages_the_harness_needs() {
        let names: Vec<_> = PREREQUISITES.iter().map(|p| p.package).collect();
        assert_eq!(
            names,
            [
                "libpcap-dev",
                "tshark",
                "pkg-config",
                "libcoap3-bin",
                "dbus-daemon",
                "ser2net"
            ]
        );
    }

    #[test]
    fn a_command_probe_finds_a_shell() {
        assert!(on_path("sh"), "every supported system has sh on PATH");
        assert!(!on_path("surely-not-a-real-command-softbus"));
    }
}
