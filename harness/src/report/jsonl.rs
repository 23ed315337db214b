//! `results.jsonl`: one JSON line per case, appended and synced as each case finishes, so a run
//! that is killed (or whose harness crashes) keeps the verdicts of every case that ran.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{io_err, CaseReport, ReportError, RESULTS_JSONL};

/// An append-only log of case results (`<dir>/results.jsonl`).
#[derive(Debug)]
pub struct ResultsLog {
    file: File,
    path: PathBuf,
}

impl ResultsLog {
    /// Opens `<dir>/results.jsonl` for appending (creating `dir` and the file if needed);
    /// existing lines are kept.
    pub fn open(dir: impl AsRef<Path>) -> Result<ResultsLog, ReportError> {
        Self::open_with(dir.as_ref(), false)
    }

    /// Creates `<dir>/results.jsonl` empty (truncating an old one), for a fresh run.
    pub fn create(dir: impl AsRef<Path>) -> Result<ResultsLog, ReportError> {
        Self::open_with(dir.as_ref(), true)
    }

    fn open_with(dir: &Path, truncate: bool) -> Result<ResultsLog, ReportError> {
        fs::create_dir_all(dir).map_err(io_err("cannot create results directory", dir))?;
        let path = dir.join(RESULTS_JSONL);
        let mut options = OpenOptions::new();
        if truncate {
            options.write(true).create(true).truncate(true);
        } else {
            options.append(true).create(true);
        }
        let file = options
            .open(&path)
            .map_err(io_err("cannot open results log", &path))?;
        Ok(ResultsLog { file, path })
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one case as a single line, then flushes and syncs it to disk.
    pub fn append(&mut self, case: &CaseReport) -> Result<(), ReportError> {
        // Plain data with string keys: serialisation cannot fail.
        let mut line = serde_json::to_string(case).unwrap_or_default();
        line.push('\n');
        // One write call per line: with O_APPEND the line lands whole even if another writer
        // shares the file.
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .and_then(|()| self.file.sync_data())
            .map_err(io_err("cannot append to results log", &self.path))
    }

    /// Reads a results log back. A torn last line (a run killed mid-write) is skipped; any
    /// other line that does not parse is an error naming its line number.
    pub fn read(path: impl AsRef<Path>) -> Result<Vec<CaseReport>, ReportError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(io_err("cannot read results log", path))?;
        let complete = text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        let mut cases = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(case) => cases.push(case),
                Err(_) if i + 1 == lines.len() && !complete => break,
                Err(source) => {
                    return Err(ReportError::ResultsLine {
                        path: path.to_owned(),
                        line: i + 1,
                        source,
                    })
                }
            }
        }
        Ok(cases)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{case, latency};
    use super::*;
    use crate::verdict::Verdict;

    #[test]
    fn appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = case("a.b.first", Verdict::Pass);
        a.latency = Some(latency([10, 20, 30]));
        let b = case("a.b.second", Verdict::Fail);
        {
            let mut log = ResultsLog::create(dir.path()).unwrap();
            log.append(&a).unwrap();
        }
        {
            // Re-opening appends rather than truncating.
            let mut log = ResultsLog::open(dir.path()).unwrap();
            log.append(&b).unwrap();
        }
        let path = dir.path().join(RESULTS_JSONL);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| !l.contains('\n')));
        assert_eq!(ResultsLog::read(&path).unwrap(), vec![a.clone(), b]);

        ResultsLog::create(dir.path()).unwrap().append(&a).unwrap();
        assert_eq!(ResultsLog::read(&path).unwrap(), vec![a]);
    }

    #[test]
    fn torn_last_line_is_skipped_but_corruption_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ResultsLog::create(dir.path()).unwrap();
        let a = case("x.first", Verdict::Pass);
        log.append(&a).unwrap();
        let path = log.path().to_owned();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\":\"x.sec").unwrap();
        assert_eq!(ResultsLog::read(&path).unwrap(), vec![a]);

        f.write_all(b"\n").unwrap();
        let e = ResultsLog::read(&path).unwrap_err();
        assert!(matches!(e, ReportError::ResultsLine { line: 2, .. }), "{e}");
        assert!(e.to_string().contains("results.jsonl:2"), "{e}");
    }
}
