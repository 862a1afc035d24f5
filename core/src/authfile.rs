//! ASCII authentication credentials: the users a server started with `-Y`
//! lets in.

use alloc::string::String;
use alloc::vec::Vec;

/// Largest auth file accepted, in bytes. memcached reads the whole file
/// into memory; this bounds what a host hands the core.
pub const AUTH_FILE_MAX: usize = 1024 * 1024;

/// Why an auth file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFileError {
    /// A line has no `:` (memcached: "has a malformed entry"); an empty
    /// line counts as one.
    Malformed,
    /// The file is larger than [`AUTH_FILE_MAX`].
    TooLarge,
}

/// The credentials of memcached's `-Y` (ASCII authentication), parsed
/// from the file's content: one `user:password` per line (split at the
/// first `:`), lines ending in `\n` or `\r\n`, the last line's ending
/// optional. As in memcached 1.6.18, an empty or `:`-less line refuses
/// the whole file. The core never reads files: a host reads the file and
/// passes its content to [`AuthFile::parse`], again on `SIGHUP`
/// ([`Store::reload_auth_file`](crate::Store::reload_auth_file)).
/// `Debug` shows the path and how many users there are, never a password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthFile {
    /// The file's name, reported by `stats settings` (`auth_enabled_ascii`).
    pub path: String,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl core::fmt::Debug for AuthFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuthFile")
            .field("path", &self.path)
            .field("users", &self.entries.len())
            .finish()
    }
}

impl AuthFile {
    /// Parses the content of the file named `path`.
    pub fn parse(path: &str, content: &[u8]) -> Result<AuthFile, AuthFileError> {
        if content.len() > AUTH_FILE_MAX {
            return Err(AuthFileError::TooLarge);
        }
        let body = content.strip_suffix(b"\n").unwrap_or(content);
        let mut entries = Vec::new();
        if !content.is_empty() {
            for line in body.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line
                    .iter()
                    .position(|&b| b == b':')
                    .ok_or(AuthFileError::Malformed)?;
                entries.push((Vec::from(&line[..colon]), Vec::from(&line[colon + 1..])));
            }
        }
        Ok(AuthFile {
            path: String::from(path),
            entries,
        })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no one can authenticate.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether some line of the file names exactly this user and password.
    pub(crate) fn check(&self, user: &[u8], pass: &[u8]) -> bool {
        self.entries
            .iter()
            .any(|(u, p)| u.as_slice() == user && p.as_slice() == pass)
    }
}

impl crate::Store {
    /// Replaces the `-Y` users (the host re-read the file, on `SIGHUP`).
    /// Connections already authenticated stay so, as in memcached. A store
    /// started without `-Y` ignores it.
    pub fn reload_auth_file(&mut self, file: AuthFile) {
        if self.ascii_auth.is_some() {
            self.ascii_auth = Some(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_lines_and_colons_in_passwords() {
        let f = AuthFile::parse("f", b"alice:pw\r\nbob:x:y\nlast:nl").unwrap();
        assert!(f.check(b"alice", b"pw"));
        assert!(!f.check(b"alice", b"pw\r"));
        assert!(f.check(b"bob", b"x:y"));
        assert!(f.check(b"last", b"nl"));
        assert!(!f.check(b"bob", b"x"));
    }

    #[test]
    fn empty_or_colonless_lines_refuse_the_file() {
        assert_eq!(
            AuthFile::parse("f", b"a:b\n\nc:d\n"),
            Err(AuthFileError::Malformed)
        );
        assert_eq!(
            AuthFile::parse("f", b"alice\n"),
            Err(AuthFileError::Malformed)
        );
        assert!(AuthFile::parse("f", b"").unwrap().is_empty());
    }
}
