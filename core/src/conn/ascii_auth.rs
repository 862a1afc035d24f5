//! memcached's ASCII authentication (`-Y`): until a connection has
//! authenticated, the only command it may send is
//! `set <any> <any> <any> <n>\r\n<user> <pass>\r\n`.
//!
//! As memcached 1.6.18 (`try_read_command_asciiauth`) does it:
//! * a line that is not `set` with at least 5 tokens and a numeric 5th
//!   gets `CLIENT_ERROR unauthenticated`; more than 2048 bytes without a
//!   line ending close the connection;
//! * the `<n>` + 2 bytes after the line must end in `\r\n` (else
//!   `CLIENT_ERROR bad command line termination`), and split on spaces
//!   into at least two words (else `CLIENT_ERROR bad authentication token
//!   format`); the first two are checked against the auth file: `STORED`
//!   (even under `noreply`), or `CLIENT_ERROR authentication failure`;
//! * memcached reads the block into its 16 KiB read buffer: a longer one
//!   closes the connection once the buffer is full, even when the whole
//!   block arrived at once;
//! * replies before authentication share one response object per read:
//!   of several in one batch of input only the last is sent.
//!
//! Nothing is stored; the binary protocol is off (`-Y` binds ASCII).

use super::output::Mark;
use super::tokens::Tokens;
use super::{Connection, Step};
use crate::store::Store;

/// memcached waits this long for a line ending before closing (1.6.18
/// closes at 2049 bytes without one, however they arrive).
const LINE_MAX: usize = 2048;
/// memcached's read buffer: the largest block (with its `\r\n`) it can
/// hold.
const BLOCK_MAX: usize = 16 * 1024;

/// A connection's authentication progress.
#[derive(Default)]
pub(super) struct AuthPhase {
    authenticated: bool,
    /// The block (with `\r\n`) the auth `set` announced, still to come.
    need: Option<usize>,
    /// Where this batch's previous reply began, to be replaced.
    reply_at: Option<Mark>,
}

impl AuthPhase {
    /// A new batch of input: its first reply is kept.
    pub(super) fn new_batch(&mut self) {
        self.reply_at = None;
    }
}

impl Connection {
    /// Whether the connection still has to authenticate (`cfg` is the
    /// cache's: `-Y` is on for good once it is on, whatever reloads).
    pub(super) fn must_authenticate(&self, cfg: &crate::Config) -> bool {
        !self.auth.authenticated && cfg.ascii_auth.is_some()
    }

    /// Handles input at `input[pos..]` before authentication.
    pub(super) fn step_auth(&mut self, store: &mut Store, pos: usize) -> Step {
        let buf = &self.input[pos..];
        let Some(need) = self.auth.need else {
            return self.auth_line(pos);
        };
        // A block that cannot fit memcached's read buffer is never
        // checked: the connection closes once the buffer would be full.
        if need > BLOCK_MAX {
            return if buf.len() >= BLOCK_MAX {
                Step::Close
            } else {
                Step::Incomplete
            };
        }
        if buf.len() < need {
            return Step::Incomplete;
        }
        self.auth.need = None;
        let block = &buf[..need];
        let reply: &[u8] = if !block.ends_with(b"\r\n") {
            b"CLIENT_ERROR bad command line termination"
        } else {
            let words = Tokens::new(&block[..need - 2]);
            if words.ntokens() < 3 {
                b"CLIENT_ERROR bad authentication token format"
            } else {
                let ok = store
                    .ascii_auth
                    .as_ref()
                    .is_some_and(|f| f.check(words.get(0), words.get(1)));
                store.stats.auth_cmds += 1;
                self.auth.authenticated = ok;
                if ok {
                    b"STORED"
                } else {
                    store.stats.auth_errors += 1;
                    b"CLIENT_ERROR authentication failure"
                }
            }
        };
        self.auth_reply(reply);
        Step::Done(need)
    }

    /// The command line of an unauthenticated connection.
    fn auth_line(&mut self, pos: usize) -> Step {
        let buf = &self.input[pos..];
        if buf.len() < 2 {
            return Step::Incomplete;
        }
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            return if buf.len() > LINE_MAX {
                Step::Close
            } else {
                Step::Incomplete
            };
        };
        let toks = Tokens::new(&buf[..nl]);
        let size = (toks.ntokens() >= 6 && toks.get(0) == b"set")
            .then(|| block_len(toks.get(4)))
            .flatten();
        match size {
            Some(n) => self.auth.need = Some(n.saturating_add(2)),
            None => self.auth_reply(b"CLIENT_ERROR unauthenticated"),
        }
        Step::Done(nl + 1)
    }

    /// Writes a reply, replacing the previous one of this batch.
    fn auth_reply(&mut self, reply: &[u8]) {
        if let Some(m) = self.auth.reply_at {
            self.output.truncate(m);
        }
        self.auth.reply_at = Some(self.output.mark());
        self.out_err(reply);
    }
}

/// The block length as memcached's `safe_strtoul` reads it: digits,
/// optionally followed by whitespace (the line's `\r`).
fn block_len(tok: &[u8]) -> Option<usize> {
    let digits = tok.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = &tok[digits..];
    if digits == 0 || !rest.iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let mut n: usize = 0;
    for &d in &tok[..digits] {
        n = n.saturating_mul(10).saturating_add(usize::from(d - b'0'));
    }
    Some(n)
}
