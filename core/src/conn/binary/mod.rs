//! memcached's binary protocol (deprecated upstream since 1.6.0 but still
//! served by 1.6.18): request framing and validation, dispatch, and reply
//! packets. The commands themselves are in [`items`], [`admin`] and
//! [`sasl`].
//!
//! Every packet is a 24-byte big-endian header, then extras, key and
//! value. memcached consumes a request in two parts, and so does this
//! module: the header, extras and key are read and dispatched first; a
//! command that carries a value (storage commands, SASL) then reads the
//! value, and one that fails discards ("swallows") a length of input after
//! the key. Whatever else the body holds is parsed as the next request,
//! as memcached does (a `stat` or `gat` whose body is longer than its key
//! and extras leaves the rest for the next header).
//!
//! Quiet variants (`getq`, `setq`, ...) leave out the replies memcached
//! leaves out: successful mutations and misses. Like memcached 1.6.18,
//! nothing is held back waiting for a non-quiet command: every reply is
//! queued in request order as soon as it exists, and the host transmits
//! whatever is pending, so the byte stream is the same for any batching.

mod admin;
mod items;
mod sasl;

pub(crate) use sasl::SaslState;

use crate::shards::Shards;

use super::{Connection, Step};

/// The first byte of every request; memcached's `-B auto` picks the binary
/// protocol for a connection whose first byte is this.
pub(crate) const REQUEST_MAGIC: u8 = 0x80;
const RESPONSE_MAGIC: u8 = 0x81;
const HEADER_LEN: usize = 24;
/// memcached's `KEY_MAX_LENGTH`: the binary header allows 16-bit key
/// lengths, memcached's items only 250 bytes.
const KEY_MAX: usize = 250;

/// Opcodes memcached 1.6.18 answers (`protocol_binary.h`). Everything else
/// (verbosity 0x1b, the range commands 0x30-0x3c, ...) is an unknown
/// command.
mod op {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// A reply's status, with the text memcached sends in the body of errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    KeyNotFound = 0x01,
    KeyExists = 0x02,
    TooLarge = 0x03,
    InvalidArguments = 0x04,
    NotStored = 0x05,
    NonNumeric = 0x06,
    AuthError = 0x20,
    AuthContinue = 0x21,
    UnknownCommand = 0x81,
    OutOfMemory = 0x82,
}

impl Status {
    /// memcached's `write_bin_error` text for the status.
    fn text(self) -> &'static [u8] {
        match self {
            Status::KeyNotFound => b"Not found",
            Status::KeyExists => b"Data exists for key.",
            Status::TooLarge => b"Too large.",
            Status::InvalidArguments => b"Invalid arguments",
            Status::NotStored => b"Not stored.",
            Status::NonNumeric => b"Non-numeric server-side value for incr or decr",
            Status::AuthError => b"Auth failure.",
            Status::AuthContinue => b"",
            Status::UnknownCommand => b"Unknown command",
            Status::OutOfMemory => b"Out of memory",
        }
    }
}

/// A request header, decoded. The opaque is kept as sent, since replies
/// echo it byte for byte.
#[derive(Clone, Copy, Debug)]
struct Header {
    opcode: u8,
    keylen: usize,
    extlen: usize,
    bodylen: u32,
    opaque: [u8; 4],
    cas: u64,
}

impl Header {
    /// Decodes the first 24 bytes of `buf` (the caller checked the length).
    fn parse(buf: &[u8]) -> Header {
        let be32 = |i: usize| [buf[i], buf[i + 1], buf[i + 2], buf[i + 3]];
        let mut cas = [0u8; 8];
        cas.copy_from_slice(&buf[16..24]);
        Header {
            opcode: buf[1],
            keylen: usize::from(u16::from_be_bytes([buf[2], buf[3]])),
            extlen: usize::from(buf[4]),
            bodylen: u32::from_be_bytes(be32(8)),
            opaque: be32(12),
            cas: u64::from_be_bytes(cas),
        }
    }

    /// Bytes memcached reads before dispatching: header, extras and key.
    fn fixed_len(&self) -> usize {
        HEADER_LEN + self.extlen + self.keylen
    }

    /// The value length after the key and extras, as memcached computes it:
    /// in a C `int`, so a body of 2 GiB or more gives a negative length.
    fn value_len(&self) -> i32 {
        self.bodylen
            .wrapping_sub((self.keylen + self.extlen) as u32) as i32
    }
}

/// One request being answered: its header, whether it is a quiet variant,
/// and its extras and key. Reply helpers take it to echo opcode and opaque.
struct Request<'a> {
    h: Header,
    /// The opcode with its quiet variant folded in (memcached's `c->cmd`).
    cmd: u8,
    quiet: bool,
    extras: &'a [u8],
    key: &'a [u8],
}

/// The command a quiet opcode is a variant of, if it is one.
fn unquiet(opcode: u8) -> Option<u8> {
    Some(match opcode {
        op::SETQ => op::SET,
        op::ADDQ => op::ADD,
        op::REPLACEQ => op::REPLACE,
        op::DELETEQ => op::DELETE,
        op::INCREMENTQ => op::INCREMENT,
        op::DECREMENTQ => op::DECREMENT,
        op::QUITQ => op::QUIT,
        op::FLUSHQ => op::FLUSH,
        op::APPENDQ => op::APPEND,
        op::PREPENDQ => op::PREPEND,
        op::GETQ => op::GET,
        op::GETKQ => op::GETK,
        op::GATQ => op::GAT,
        op::GATKQ => op::GATK,
        _ => return None,
    })
}

/// A big-endian `u32` from the first four bytes of `b` (extras whose length
/// the caller validated).
fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A big-endian `u64` from the first eight bytes of `b`.
fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// A length the binary protocol swallows after an error: memcached passes
/// it as a C `int` and swallows nothing when it is not positive.
fn swallow_len(n: i32) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Connection {
    /// Handles the binary request at `input[pos..]` (memcached's
    /// `try_read_command_binary` and `dispatch_bin_command`).
    pub(super) fn step_binary<S: Shards>(&mut self, shards: &mut S, pos: usize) -> Step {
        // The request's bytes are borrowed while replies are written.
        let input = core::mem::take(&mut self.input);
        let step = self.binary_request(shards, &input[pos..]);
        self.input = input;
        step
    }

    fn binary_request<S: Shards>(&mut self, shards: &mut S, buf: &[u8]) -> Step {
        if buf.len() < HEADER_LEN {
            return Step::Incomplete;
        }
        if buf[0] != REQUEST_MAGIC {
            // memcached hangs up without a word.
            return Step::Close;
        }
        let h = Header::parse(buf);
        let fixed = h.fixed_len();
        if buf.len() < fixed {
            return Step::Incomplete;
        }
        let (cmd, quiet) = match unquiet(h.opcode) {
            Some(cmd) => (cmd, true),
            None => (h.opcode, false),
        };
        let req = Request {
            h,
            cmd,
            quiet,
            extras: &buf[HEADER_LEN..HEADER_LEN + h.extlen],
            key: &buf[HEADER_LEN + h.extlen..fixed],
        };
        let rest = &buf[fixed..];
        self.dispatch_binary(shards, &req, rest)
    }

    /// Validates lengths and authentication, then runs the command. `rest`
    /// is the input after the key: the value, for commands that have one.
    fn dispatch_binary<S: Shards>(
        &mut self,
        shards: &mut S,
        req: &Request<'_>,
        rest: &[u8],
    ) -> Step {
        let h = &req.h;
        if h.keylen + h.extlen > h.bodylen as usize {
            self.bin_error(req, Status::UnknownCommand);
            return Step::Close;
        }
        if shards.config().sasl.is_some() && !self.sasl.allows(h.opcode) {
            self.bin_error(req, Status::AuthError);
            return Step::Close;
        }
        if h.keylen > KEY_MAX {
            return self.protocol_error(req);
        }
        let done = Step::Done(h.fixed_len());
        let (klen, elen, blen) = (h.keylen, h.extlen, h.bodylen as usize);
        let bare = klen == 0 && elen == 0 && blen == 0;
        match req.cmd {
            op::VERSION if bare => {
                let version = shards.config().version.as_bytes();
                self.bin_reply(req, 0, version);
                done
            }
            op::NOOP if bare => {
                self.bin_reply(req, 0, b"");
                done
            }
            op::QUIT if bare => {
                self.quit = true;
                if !req.quiet {
                    self.bin_reply(req, 0, b"");
                }
                Step::Close
            }
            op::FLUSH if klen == 0 && blen == elen && (elen == 0 || elen == 4) => {
                self.bin_flush(shards, req);
                done
            }
            op::SET | op::ADD | op::REPLACE if elen == 8 && klen != 0 && blen >= klen + 8 => {
                self.bin_store(&mut self.key_shard(shards, req.key), req, rest)
            }
            op::APPEND | op::PREPEND if klen > 0 && elen == 0 => {
                self.bin_store(&mut self.key_shard(shards, req.key), req, rest)
            }
            op::GET | op::GETK if elen == 0 && blen == klen && klen > 0 => {
                self.bin_get(&mut self.key_shard(shards, req.key), req);
                done
            }
            op::TOUCH | op::GAT | op::GATK if elen == 4 && klen != 0 => {
                self.bin_get(&mut self.key_shard(shards, req.key), req);
                done
            }
            op::DELETE if klen > 0 && elen == 0 && blen == klen => {
                self.bin_delete(&mut self.key_shard(shards, req.key), req);
                done
            }
            op::INCREMENT | op::DECREMENT if klen > 0 && elen == 20 && blen == klen + 20 => {
                self.bin_arith(&mut self.key_shard(shards, req.key), req);
                done
            }
            op::STAT if elen == 0 => {
                self.bin_stat(shards, req);
                done
            }
            op::SASL_LIST_MECHS if bare => {
                self.bin_sasl_list(shards.config(), req);
                done
            }
            op::SASL_AUTH | op::SASL_STEP if elen == 0 && klen != 0 => {
                self.bin_sasl_auth(&mut self.home_shard(shards), req, rest)
            }
            op::VERSION
            | op::NOOP
            | op::QUIT
            | op::FLUSH
            | op::SET
            | op::ADD
            | op::REPLACE
            | op::APPEND
            | op::PREPEND
            | op::GET
            | op::GETK
            | op::TOUCH
            | op::GAT
            | op::GATK
            | op::DELETE
            | op::INCREMENT
            | op::DECREMENT
            | op::STAT
            | op::SASL_LIST_MECHS
            | op::SASL_AUTH
            | op::SASL_STEP => self.protocol_error(req),
            _ => {
                // memcached swallows the whole body length, counted from
                // after the extras and key it already read: a request with
                // a key eats that many bytes of what follows.
                self.bin_error(req, Status::UnknownCommand);
                self.swallow = swallow_len(h.bodylen as i32);
                done
            }
        }
    }

    /// A request whose lengths do not fit its command: memcached answers
    /// "Invalid arguments" and closes.
    fn protocol_error(&mut self, req: &Request<'_>) -> Step {
        self.bin_error(req, Status::InvalidArguments);
        Step::Close
    }

    /// Appends a reply header for `req`.
    fn bin_header(
        &mut self,
        req: &Request<'_>,
        status: u16,
        extlen: u8,
        keylen: u16,
        bodylen: u32,
        cas: u64,
    ) {
        let mut hd = [0u8; HEADER_LEN];
        hd[0] = RESPONSE_MAGIC;
        hd[1] = req.h.opcode;
        hd[2..4].copy_from_slice(&keylen.to_be_bytes());
        hd[4] = extlen;
        hd[6..8].copy_from_slice(&status.to_be_bytes());
        hd[8..12].copy_from_slice(&bodylen.to_be_bytes());
        hd[12..16].copy_from_slice(&req.h.opaque);
        hd[16..24].copy_from_slice(&cas.to_be_bytes());
        self.output.extend_from_slice(&hd);
    }

    /// A success reply carrying `body` (memcached's `write_bin_response`,
    /// minus the quiet check, which callers make).
    fn bin_reply(&mut self, req: &Request<'_>, cas: u64, body: &[u8]) {
        self.bin_header(req, 0, 0, 0, body.len() as u32, cas);
        self.output.extend_from_slice(body);
    }

    /// An error reply with memcached's text for `status`; sent even for
    /// quiet requests.
    fn bin_error(&mut self, req: &Request<'_>, status: Status) {
        self.bin_error_text(req, status, status.text());
    }

    /// Ends a binary connection with an out-of-memory packet whose text is
    /// `reply` without its `SERVER_ERROR ` prefix (memcached's
    /// `out_of_memory`). No request is being answered, so opcode and
    /// opaque are zero. See [`Connection::fail`].
    pub(super) fn bin_fail(&mut self, reply: &[u8]) {
        let text = reply.strip_prefix(b"SERVER_ERROR ").unwrap_or(reply);
        let mut hd = [0u8; HEADER_LEN];
        hd[0] = RESPONSE_MAGIC;
        hd[6..8].copy_from_slice(&(Status::OutOfMemory as u16).to_be_bytes());
        hd[8..12].copy_from_slice(&(text.len() as u32).to_be_bytes());
        self.output.extend_from_slice(&hd);
        self.output.extend_from_slice(text);
    }

    /// An error reply with its own text (memcached's out-of-memory errors
    /// say what ran out).
    fn bin_error_text(&mut self, req: &Request<'_>, status: Status, text: &[u8]) {
        self.bin_header(req, status as u16, 0, 0, text.len() as u32, 0);
        self.output.extend_from_slice(text);
    }
}
