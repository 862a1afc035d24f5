//! The runner's side of warm restart (`-e PATH`).
//!
//! The guest writes and reads the snapshot itself (see the server's
//! `warm` module); the runner grants it exactly what that needs and
//! delivers the graceful stop request:
//!
//! * **Files.** The guest gets PATH's directory, and nothing else, preopened
//!   read-write at the same absolute path as on the host, so the `-e` it is
//!   given names the same file. It needs the directory, not just the file:
//!   the snapshot is written to `PATH.tmp` and renamed over PATH, and
//!   removed once restored. Give it a directory of its own. Under
//!   `--instances` every instance gets that directory and its own
//!   `PATH.PORT` (see `instances::split`).
//! * **Stopping.** A WASI guest gets no signals. On SIGUSR1 the runner
//!   posts a graceful stop to the guest's mailbox (see `mailbox`); the
//!   guest reads it, writes the snapshot and exits (every guest: each
//!   has a mailbox).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};

/// Where the snapshot lives, on the host and as the guest sees it.
pub struct SnapshotDir {
    /// The directory, canonical, on the host.
    pub host: PathBuf,
    /// The same directory's path in the guest (the host path as a string).
    pub guest: String,
    /// The snapshot file under the guest path: what the guest's `-e` says.
    pub file: PathBuf,
}

impl SnapshotDir {
    /// Resolves `-e PATH` (relative to the runner's working directory).
    /// Fails when PATH names no file or its directory does not exist.
    pub fn resolve(path: &Path) -> anyhow::Result<SnapshotDir> {
        let name = path
            .file_name()
            .ok_or_else(|| anyhow!("-e {}: names a directory, not a file", path.display()))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let host = dir
            .canonicalize()
            .with_context(|| format!("-e {}: its directory", path.display()))?;
        let guest = host
            .to_str()
            .ok_or_else(|| anyhow!("-e {}: the directory is not valid UTF-8", path.display()))?
            .to_string();
        let file = host.join(name);
        if file.to_str().is_none() {
            return Err(anyhow!("-e {}: not valid UTF-8", path.display()));
        }
        Ok(SnapshotDir { host, guest, file })
    }
}
