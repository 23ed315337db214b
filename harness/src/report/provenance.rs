//! Provenance helpers: timestamps, host name, git commit and content hashes.
//!
//! These read files only (no `git` subprocess), so they work in a bare CI checkout and never
//! hang on a pager or a credential prompt.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::{io_err, ReportError};

/// Formats a time as RFC 3339 in UTC with millisecond precision: `2026-11-26T16:06:00.123Z`.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let millis: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    };
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i128) -> (i128, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The machine's host name (from the kernel, then `/etc/hostname`, then `$HOSTNAME`), or
/// `"unknown"`.
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .chain(std::env::var("HOSTNAME").ok())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Finds the git directory for `start` (searching parent directories), following a `.git` file
/// (`gitdir: ...`) as worktrees and submodules use.
fn find_git_dir(start: &Path) -> Option<PathBuf> {
    let start = start.canonicalize().ok()?;
    for dir in start.ancestors() {
        let dot_git = dir.join(".git");
        if dot_git.is_dir() {
            return Some(dot_git);
        }
        if dot_git.is_file() {
            let text = fs::read_to_string(&dot_git).ok()?;
            let target = text.strip_prefix("gitdir:")?.trim();
            return Some(dir.join(target));
        }
    }
    None
}

/// The commit checked out in the repository containing `start`, read from `.git` files
/// (HEAD, loose refs, packed-refs); `None` when not in a repository or unreadable.
pub fn git_commit(start: &Path) -> Option<String> {
    let git_dir = find_git_dir(start)?;
    let head = fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:").map(str::trim) else {
        return is_object_id(head).then(|| head.to_ascii_lowercase());
    };
    // Linked worktrees keep shared refs in the common directory.
    let common = fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.clone());
    for dir in [&git_dir, &common] {
        if let Ok(id) = fs::read_to_string(dir.join(reference)) {
            let id = id.trim();
            if is_object_id(id) {
                return Some(id.to_ascii_lowercase());
            }
        }
    }
    let packed = fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (id, name) = line.split_once(' ')?;
        (name.trim() == reference && is_object_id(id)).then(|| id.to_ascii_lowercase())
    })
}

/// SHA-256 (lower-case hex) of a directory tree: every file's relative path (with `/`) and
/// content, in sorted path order; symlinks by their target. Empty directories do not count.
pub fn hash_tree(dir: &Path) -> Result<String, ReportError> {
    let mut entries: Vec<(String, PathBuf)> = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let read = fs::read_dir(&d).map_err(io_err("cannot read directory", &d))?;
        for entry in read {
            let entry = entry.map_err(io_err("cannot read directory", &d))?;
            let path = entry.path();
            let ty = entry.file_type().map_err(io_err("cannot stat", &path))?;
            if ty.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                entries.push((rel, path));
            }
        }
    }
    entries.sort();
    let mut tree = Sha256::new();
    for (rel, path) in entries {
        let meta = fs::symlink_metadata(&path).map_err(io_err("cannot stat", &path))?;
        let content_hash = if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(io_err("cannot read link", &path))?;
            Sha256::digest(format!("symlink:{}", target.display()))
        } else {
            let bytes = fs::read(&path).map_err(io_err("cannot read", &path))?;
            Sha256::digest(bytes)
        };
        tree.update(rel.as_bytes());
        tree.update([0]);
        tree.update(content_hash);
    }
    Ok(hex::encode(tree.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_708_800_123);
        assert_eq!(rfc3339_utc(t), "2026-11-26T16:00:00.123Z");
        // Leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_utc(t), "2000-02-29T00:00:00.000Z");
        let t = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339_utc(t), "1969-12-31T23:59:59.000Z");
    }

    #[test]
    fn reads_git_commit_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path().join(".git");
        fs::create_dir_all(git.join("refs/heads")).unwrap();
        fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(git_commit(dir.path()), None);
        let id = "0123456789abcdef0123456789abcdef01234567";
        fs::write(
            git.join("packed-refs"),
            format!("# pack-refs\n{id} refs/heads/main\n"),
        )
        .unwrap();
        let sub = dir.path().join("a/b");
        fs::create_dir_all(&sub).unwrap();
        assert_eq!(git_commit(&sub).as_deref(), Some(id));
        let loose = "89abcdef0123456789abcdef0123456789abcdef";
        fs::write(git.join("refs/heads/main"), format!("{loose}\n")).unwrap();
        assert_eq!(git_commit(dir.path()).as_deref(), Some(loose));
        fs::write(git.join("HEAD"), format!("{id}\n")).unwrap();
        assert_eq!(git_commit(dir.path()).as_deref(), Some(id));
    }

    #[test]
    fn tree_hash_depends_on_paths_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a")).unwrap();
        fs::write(dir.path().join("a/x.bin"), b"one").unwrap();
        fs::write(dir.path().join("y.txt"), b"two").unwrap();
        let h1 = hash_tree(dir.path()).unwrap();
        assert_eq!(h1, hash_tree(dir.path()).unwrap());
        fs::create_dir_all(dir.path().join("empty")).unwrap();
        assert_eq!(h1, hash_tree(dir.path()).unwrap());
        fs::write(dir.path().join("y.txt"), b"two!").unwrap();
        let h2 = hash_tree(dir.path()).unwrap();
        assert_ne!(h1, h2);
        fs::rename(dir.path().join("y.txt"), dir.path().join("z.txt")).unwrap();
        assert_ne!(h2, hash_tree(dir.path()).unwrap());
        let e = hash_tree(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn host_name_is_not_empty() {
        assert!(!host_name().is_empty());
    }
}
