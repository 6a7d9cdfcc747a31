//! The local lock's holder: redb locks an open state file against every other open (in this
//! process or another, [`super::StateError::Locked`]); the run that holds it writes its pid
//! beside the file (`<file>.pid`) so that the refusal can name it, and removes it at close.

use std::path::{Path, PathBuf};

/// `<file>.pid`, written once the lock is held and removed on drop (when it still names us).
#[derive(Debug)]
pub(super) struct PidFile(PathBuf);

impl PidFile {
    /// Writes this process's pid beside the state file `path`; `None` when it cannot (the
    /// refusal then names no pid).
    pub(super) fn write(path: &Path) -> Option<PidFile> {
        let pid_file = pid_path(path);
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).ok()?;
        Some(PidFile(pid_file))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read_pid(&self.0) == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Where the holder of the state file `path` writes its pid.
pub(super) fn pid_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pid");
    PathBuf::from(name)
}

/// The pid in a pid file, when there is one.
pub(super) fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
