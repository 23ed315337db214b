//! A private D-Bus daemon for vbluez: `dbus-daemon --nofork` with a generated configuration
//! that allows everything, listening on a Unix socket in vbluez's directory. Killed on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// What to tell a user whose machine lacks the daemon.
pub const INSTALL_HINT: &str = "install dbus-daemon: apt-get install dbus-daemon";

/// A running private bus.
#[derive(Debug)]
pub struct PrivateBus {
    child: Child,
    address: String,
    socket: std::path::PathBuf,
}

impl PrivateBus {
    /// Starts `dbus-daemon` with its configuration in `dir`, listening on `socket` (a stale
    /// socket file there is removed first).
    pub fn start(dir: &Path, socket: &Path) -> std::io::Result<PrivateBus> {
        let config = dir.join("bus.conf");
        if std::fs::symlink_metadata(socket).is_ok() {
            std::fs::remove_file(socket)?;
        }
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>vbluez</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )?;
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .arg("--print-address")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // It warns that it cannot raise its fd limit when not root; nothing else matters.
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start dbus-daemon ({e}); {INSTALL_HINT}"),
                )
            })?;
        let mut line = String::new();
        let stdout = child.stdout.take();
        if let Some(out) = stdout {
            BufReader::new(out).read_line(&mut line)?;
        }
        if line.trim().is_empty() {
            let _ = child.kill();
            let status = child.wait()?;
            return Err(std::io::Error::other(format!(
                "dbus-daemon exited ({status}) without printing its address"
            )));
        }
        // Without the daemon's guid, so the address stays valid for a daemon restarted on the
        // same socket (libdbus reads the system bus address once per process).
        let address = format!("unix:path={}", socket.display());
        Ok(PrivateBus {
            child,
            address,
            socket: socket.to_owned(),
        })
    }

    /// The bus address (`unix:path=...`, no guid).
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}
