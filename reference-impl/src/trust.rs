//! The trust store (spec 5): static keys pinned by PIN pairing, and until-revoked grants.
//!
//! [`TrustStore`] is plain data the core edits in memory; [`TrustStore::load`] and
//! [`TrustStore::save`] are the file driver used by `softbusd`. Saving is atomic (write a
//! temporary file, fsync, rename) and the file is the owner's alone (mode 0600 whatever the
//! umask, spec [SEC-6], [SEC-7]): anyone who can write it can pin a key or add a grant. A store that cannot
//! be read is an error: it is never silently replaced by an empty one, because that would unpin
//! every peer.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::crypto::DeviceId;

/// Version of the file format.
pub const STORE_VERSION: u32 = 1;

/// A pinned peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedPeer {
    /// The peer's static X25519 public key, hex.
    pub public_key: String,
    /// Unix time of pairing, seconds.
    pub paired_at: u64,
}

/// A grant of scope until-revoked, persisted so it survives a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedGrant {
    /// Grant ID as sent in PERM_RESPONSE.
    pub grant_id: u32,
    /// Holder device ID, hex.
    pub holder: String,
    /// Capability name.
    pub capability: String,
}

/// The trust store contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustStore {
    /// File format version.
    #[serde(default = "default_version")]
    pub version: u32,
    /// Pinned peers by device ID (hex).
    pub peers: BTreeMap<String, TrustedPeer>,
    /// Persisted grants.
    #[serde(default)]
    pub grants: Vec<PersistedGrant>,
}

fn default_version() -> u32 {
    STORE_VERSION
}

/// The trust store file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    /// I/O failure.
    #[error("trust store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file exists but is not a valid store.
    #[error("trust store {path} is corrupt ({problem}); refusing to start with an empty store. Fix or delete the file to unpin every peer")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl TrustStore {
    /// An empty store.
    pub fn new() -> TrustStore {
        TrustStore {
            version: STORE_VERSION,
            ..TrustStore::default()
        }
    }

    /// The pinned key of `id`, if any.
    pub fn pinned_key(&self, id: &DeviceId) -> Option<[u8; 32]> {
        let peer = self.peers.get(&id.to_hex())?;
        let raw = hex::decode(&peer.public_key).ok()?;
        raw.try_into().ok()
    }

    /// Pin `key` for the device it derives to.
    pub fn pin(&mut self, key: &[u8; 32], paired_at: u64) -> DeviceId {
        let id = DeviceId::from_public_key(key);
        self.peers.insert(
            id.to_hex(),
            TrustedPeer {
                public_key: hex::encode(key),
                paired_at,
            },
        );
        id
    }

    /// Whether `key` is pinned (the device ID it derives to maps to exactly this key).
    pub fn is_pinned(&self, key: &[u8; 32]) -> bool {
        self.pinned_key(&DeviceId::from_public_key(key)).as_ref() == Some(key)
    }

    /// Read a store; a missing file is an empty store, anything unreadable is an error.
    pub fn load(path: &Path) -> Result<TrustStore, TrustStoreError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TrustStore::new()),
            Err(source) => {
                return Err(TrustStoreError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let store: TrustStore =
            serde_json::from_str(&text).map_err(|e| TrustStoreError::Corrupt {
                path: path.to_owned(),
                problem: e.to_string(),
            })?;
        if store.version != STORE_VERSION {
            return Err(TrustStoreError::Corrupt {
                path: path.to_owned(),
                problem: format!("unsupported version {}", store.version),
            });
        }
        for (id, peer) in &store.peers {
            let key: Option<[u8; 32]> = hex::decode(&peer.public_key)
                .ok()
                .and_then(|k| k.try_into().ok());
            match key {
                Some(k) if DeviceId::from_public_key(&k).to_hex() == *id => {}
                _ => {
                    return Err(TrustStoreError::Corrupt {
                        path: path.to_owned(),
                        problem: format!(
                            "peer {id}: public key missing or does not derive to the ID"
                        ),
                    })
                }
            }
        }
        Ok(store)
    }

    /// Write the store atomically: temp file, fsync, rename, fsync the directory.
    pub fn save(&self, path: &Path) -> Result<(), TrustStoreError> {
        let io = |source| TrustStoreError::Io {
            path: path.to_owned(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        write_private(path, text.as_bytes()).map_err(io)?;
        Ok(())
    }
}

/// Replace `path` with `bytes` atomically, readable and writable by the owner only (0600 on
/// Unix, from creation on: the temporary file is never more open than the result). Used for the
/// trust store and the identity key.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp); // a leftover may carry another mode
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        // The mode given at creation is filtered by the umask; set it exactly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_corruption_is_an_error() {
        let dir = std::env::temp_dir().join(format!("softbus-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trust.json");
        let mut s = TrustStore::new();
        let id = s.pin(&[9u8; 32], 1);
        assert!(s.is_pinned(&[9u8; 32]));
        s.save(&path).unwrap();
        let back = TrustStore::load(&path).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.pinned_key(&id), Some([9u8; 32]));
        std::fs::write(&path, "{ not json").unwrap();
        let err = TrustStore::load(&path).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        assert!(TrustStore::load(&dir.join("missing.json"))
            .unwrap()
            .peers
            .is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
