//! SASL credentials: the users a server started with `-S` lets in.

use alloc::vec::Vec;

/// memcached's `MAX_ENTRY_LEN`: its password-file reader holds one line in
/// a buffer this long, so a user and password longer together than this
/// less four bytes are refused outright.
const MAX_ENTRY_LEN: usize = 256;

/// The users SASL PLAIN authenticates against, parsed from memcached's
/// password file (the file `MEMCACHED_SASL_PWDB` names).
///
/// The format is memcached's: one `user:password` entry per line, anything
/// after a further `:` ignored. A password is checked as memcached checks
/// it: the first line naming the user decides, and the password must be
/// what follows `user:` on that line up to a `:`, `\r`, NUL or the line's
/// end. The core never reads files: hosts read the file and hand its
/// contents to [`SaslDb::parse`]. `Debug` shows only how many lines there
/// are, never a password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SaslDb {
    /// Each line of the file, without its `\n`.
    lines: Vec<Vec<u8>>,
}

impl SaslDb {
    /// Parses the contents of a password file. Every line is kept; lines
    /// without a `user:` prefix simply never match.
    pub fn parse(contents: &[u8]) -> SaslDb {
        let lines = contents
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(Vec::from)
            .collect();
        SaslDb { lines }
    }

    /// Number of non-empty lines (entries, or junk that never matches).
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether the file had no entries at all: no one can authenticate.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Whether `user` may authenticate with `password` (memcached's
    /// `sasl_server_userdb_checkpass`).
    pub(crate) fn check(&self, user: &[u8], password: &[u8]) -> bool {
        if user.len() + password.len() > MAX_ENTRY_LEN - 4 {
            return false;
        }
        let Some(rest) = self
            .lines
            .iter()
            .find_map(|l| l.strip_prefix(user)?.strip_prefix(b":"))
        else {
            return false;
        };
        rest.starts_with(password)
            && matches!(rest.get(password.len()), None | Some(b':' | b'\r' | 0))
    }
}

impl core::fmt::Debug for SaslDb {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SaslDb")
            .field("lines", &self.lines.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_user_decides() {
        let db = SaslDb::parse(b"alice:secret\nbob:pw:extra\r\nalice:other\ncarol:dos\r\n");
        assert!(db.check(b"alice", b"secret"));
        assert!(!db.check(b"alice", b"other"));
        assert!(db.check(b"bob", b"pw"));
        assert!(db.check(b"carol", b"dos"));
        assert!(!db.check(b"carol", b"do"));
        assert!(!db.check(b"bo", b"pw"));
        assert!(!db.check(b"dave", b""));
        assert_eq!(db.len(), 4);
    }

    #[test]
    fn passwords_end_where_memcached_stops_comparing() {
        let db = SaslDb::parse(b"u:a:b\nv:\nw:x\x00y\n");
        assert!(db.check(b"u", b"a"));
        assert!(db.check(b"u", b"a:b"));
        assert!(db.check(b"v", b""));
        assert!(db.check(b"w", b"x"));
        let long = [b'p'; 251];
        let mut line = b"uu:".to_vec();
        line.extend_from_slice(&long);
        assert!(!SaslDb::parse(&line).check(b"uu", &long));
    }

    #[test]
    fn debug_hides_passwords() {
        let db = SaslDb::parse(b"alice:secret\n");
        assert!(!alloc::format!("{db:?}").contains("secret"));
    }
}
