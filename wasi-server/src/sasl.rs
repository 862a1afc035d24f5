//! Where the server finds its SASL credentials (`-S`).
//!
//! memcached reads users and passwords from the file the
//! `MEMCACHED_SASL_PWDB` environment variable names (`user:password`
//! lines). The native server reads that file once, at start. A wasm guest
//! has no files and no host environment: the runner reads the file and
//! hands the guest its content and nothing else, in the
//! `WASMCACHED_SASL_PWDB_DATA` environment variable (see
//! [`GUEST_DATA_VAR`]). Either way the core gets the content as data
//! ([`wasmcached_core::SaslDb`]).

use wasmcached_core::SaslDb;

/// memcached's variable naming the password file.
pub const PWDB_VAR: &str = "MEMCACHED_SASL_PWDB";

/// The variable through which the runner passes the password file's
/// content to a wasm guest.
pub const GUEST_DATA_VAR: &str = "WASMCACHED_SASL_PWDB_DATA";

/// Reads the password file `MEMCACHED_SASL_PWDB` names, on the host (the
/// native server, or the runner on its guest's behalf).
pub fn read_pwdb_file() -> Result<Vec<u8>, String> {
    let path = std::env::var_os(PWDB_VAR).ok_or_else(|| {
        format!("-S needs {PWDB_VAR} to name a password file of user:password lines")
    })?;
    std::fs::read(&path).map_err(|e| format!("cannot read {PWDB_VAR} file {path:?}: {e}"))
}

/// The password file's content as the runner passes it to a guest: text,
/// since guest environment variables are strings.
pub fn pwdb_for_guest() -> Result<String, String> {
    String::from_utf8(read_pwdb_file()?)
        .map_err(|_| format!("the {PWDB_VAR} file must be UTF-8 text to pass to the wasm server"))
}

/// The credentials `-S` authenticates against, in this process: the file
/// natively, the runner's variable in a wasm guest.
pub fn credentials() -> Result<SaslDb, String> {
    let content = if cfg!(target_os = "wasi") {
        std::env::var(GUEST_DATA_VAR)
            .map(String::into_bytes)
            .map_err(|_| format!("-S: the runner passed no {GUEST_DATA_VAR}"))?
    } else {
        read_pwdb_file()?
    };
    let db = SaslDb::parse(&content);
    if db.is_empty() {
        eprintln!("warning: the {PWDB_VAR} file has no users; no client can authenticate");
    }
    Ok(db)
}
