//! Where the server finds its `-Y` auth file, and its reload on SIGHUP.
//!
//! memcached reads the file at start and again on SIGHUP, keeping the old
//! users when the new file cannot be read or parsed. The native server
//! does the same. A wasm guest has no files: the runner reads the file and
//! passes its content in the `WASMCACHED_AUTH_FILE_DATA` environment
//! variable ([`GUEST_DATA_VAR`]) at start, and on SIGHUP reads it again
//! and sends the new content over the guest's standard input
//! ([`crate::host_channel`]), which hands it to [`deliver`]. Either way
//! the core gets the content as data ([`wasmcached_core::AuthFile`]).

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmcached_core::{AuthFile, AuthFileError, AUTH_FILE_MAX};

/// The variable through which the runner passes the file's content.
pub const GUEST_DATA_VAR: &str = "WASMCACHED_AUTH_FILE_DATA";

static RELOAD: AtomicBool = AtomicBool::new(false);

/// A guest's new file content from the runner, until the next pass
/// applies it (only the latest matters).
#[cfg(target_os = "wasi")]
static DELIVERED: std::sync::Mutex<Option<Vec<u8>>> = std::sync::Mutex::new(None);

/// Reads the file, on the host (the native server, or the runner on its
/// guest's behalf), refusing one over [`AUTH_FILE_MAX`].
pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| {
        format!(
            "Could not open authfile [{}] for reading: {e}",
            path.display()
        )
    })?;
    let mut content = Vec::new();
    f.take(AUTH_FILE_MAX as u64 + 1)
        .read_to_end(&mut content)
        .map_err(|e| format!("Could not read authfile [{}]: {e}", path.display()))?;
    Ok(content)
}

/// Parses the content of the file at `path`, with memcached's message
/// for a bad file.
pub fn parse(path: &Path, content: &[u8]) -> Result<AuthFile, String> {
    let name = path.display().to_string();
    AuthFile::parse(&name, content).map_err(|e| match e {
        AuthFileError::Malformed => {
            format!("Authfile [{name}] has a malformed entry. Should be 'user:password'")
        }
        AuthFileError::TooLarge => {
            format!("Authfile [{name}] is larger than {AUTH_FILE_MAX} bytes")
        }
    })
}

/// The users `-Y` authenticates against, in this process: the file
/// natively, the runner's variable in a wasm guest.
pub fn load(path: &Path) -> Result<AuthFile, String> {
    let content = if cfg!(target_os = "wasi") {
        std::env::var(GUEST_DATA_VAR)
            .map(String::into_bytes)
            .map_err(|_| format!("-Y: the runner passed no {GUEST_DATA_VAR}"))?
    } else {
        read_file(path)?
    };
    parse(path, &content)
}

/// Asks for the file to be read again (the SIGHUP handler).
pub fn request_reload() {
    RELOAD.store(true, Ordering::SeqCst);
}

/// Takes the file's new content from the runner (a wasm guest's SIGHUP)
/// and asks for it to be applied.
#[cfg(target_os = "wasi")]
pub(crate) fn deliver(content: Vec<u8>) {
    *DELIVERED.lock().unwrap_or_else(|e| e.into_inner()) = Some(content);
    request_reload();
}

/// SIGHUP reloads the auth file, as in memcached (without one it does
/// nothing, and never stops the server). The handler only stores to an
/// atomic.
#[cfg(not(target_os = "wasi"))]
pub fn on_sighup() {
    // SAFETY: the handler only stores to a static atomic, which is
    // async-signal-safe.
    let r =
        unsafe { signal_hook::low_level::register(signal_hook::consts::SIGHUP, request_reload) };
    if let Err(e) = r {
        eprintln!("warning: cannot handle SIGHUP: {e}");
    }
}

/// Re-reads the file if a reload was asked for (in a guest: takes what
/// the runner delivered), and hands the new users to every shard; on
/// failure the old users stay.
pub(crate) fn reload_if_requested(cache: &crate::cache::SharedCache) {
    if !RELOAD.swap(false, Ordering::SeqCst) {
        return;
    }
    let Some(path) = cache.config().ascii_auth.as_ref().map(|f| f.path.clone()) else {
        return;
    };
    let path = Path::new(&path);
    match new_content(path).and_then(|c| parse(path, &c)) {
        // Every shard checks logins against its own copy.
        Ok(f) => {
            for i in 0..cache.count() {
                cache.lock(i).reload_auth_file(f.clone());
            }
        }
        Err(e) => eprintln!("{e}; keeping the previous users"),
    }
}

/// The file's content for a reload: read again natively.
#[cfg(not(target_os = "wasi"))]
fn new_content(path: &Path) -> Result<Vec<u8>, String> {
    read_file(path)
}

/// The file's content for a reload: what the runner delivered.
#[cfg(target_os = "wasi")]
fn new_content(_: &Path) -> Result<Vec<u8>, String> {
    let delivered = DELIVERED.lock().unwrap_or_else(|e| e.into_inner()).take();
    delivered.ok_or_else(|| "-Y: no new content from the runner".to_string())
}
