//! The meta commands `mg`, `ms`, `md`, `ma`, `me` and `mn`, including the
//! anti-thundering-herd state (win tokens, stale items, vivify on miss).

use alloc::vec::Vec;

use base64::Engine as _;

use crate::num::{parse_i32_truncating, parse_u32_truncating, parse_u64, push_i64, push_u64};
use crate::shards::Shards;
use crate::store::{bits, Store};

use super::text::{add_delta, store_item, Delta, StoreMode, StoreRequest, Stored, KEY_MAX};
use super::tokens::Tokens;
use super::{Connection, Step};

/// memcached's `MFLAG_MAX_OPT_LENGTH`: most tokens (command, key, flags and
/// the terminal token) a meta command may have.
const MAX_OPT_TOKENS: usize = 20;
/// memcached's `MFLAG_MAX_OPAQUE_LENGTH`, counting the `O` itself.
const MAX_OPAQUE: usize = 32;

const E_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format";
const E_BAD_TOKEN: &[u8] = b"CLIENT_ERROR bad token in command line format";
const E_OPAQUE: &[u8] = b"CLIENT_ERROR opaque token too long";

/// A key as given, or decoded from base64 (`b` flag).
struct Key {
    buf: [u8; KEY_MAX],
    len: usize,
}

impl Key {
    fn from(bytes: &[u8]) -> Key {
        let mut k = Key {
            buf: [0; KEY_MAX],
            len: bytes.len().min(KEY_MAX),
        };
        k.buf[..k.len].copy_from_slice(&bytes[..k.len]);
        k
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Flags of one meta command after memcached's `_meta_flag_preparse`.
#[derive(Default)]
struct MetaFlags {
    no_update: bool,
    vivify: bool,
    value: bool,
    set_stale: bool,
    no_reply: bool,
    has_cas: bool,
    new_ttl: bool,
    key_binary: bool,
    mode: u8,
    exptime: u32,
    autoviv_exptime: u32,
    recache_time: u32,
    client_flags: u32,
    req_cas: u64,
    delta: u64,
    initial: u64,
}

/// Parses the flag tokens from index `start` on. On error returns the
/// message memcached would send (mg/ms; md/ma use their own).
fn preparse(
    store: &Store,
    toks: &Tokens<'_>,
    start: usize,
    key: &mut Key,
) -> Result<MetaFlags, &'static [u8]> {
    let mut of = MetaFlags {
        delta: 1,
        ..MetaFlags::default()
    };
    let mut seen = [false; 127];
    let mut err: Option<&'static [u8]> = None;
    let mut has_error = false;
    for tok in toks.iter_from(start) {
        let o = tok[0];
        if o >= 127 || seen[usize::from(o)] {
            return Err(b"CLIENT_ERROR duplicate flag");
        }
        seen[usize::from(o)] = true;
        let arg = &tok[1..];
        let mut fail = |e: &'static [u8]| {
            err = Some(e);
            has_error = true;
        };
        match o {
            b'b' => {
                // memcached's lenient decoder (see `decode_key`), as `me`
                // uses: keys it accepts must name the same item here.
                let mut out = [0u8; KEY_MAX];
                match decode_key(key.as_slice(), &mut out) {
                    Some(n) => {
                        key.buf[..n].copy_from_slice(&out[..n]);
                        key.len = n;
                    }
                    None => {
                        key.len = 0;
                        fail(b"CLIENT_ERROR error decoding key");
                    }
                }
                of.key_binary = true;
            }
            b'N' => {
                of.vivify = true;
                match parse_i32_truncating(arg) {
                    Some(t) => of.autoviv_exptime = store.realtime(t),
                    None => fail(E_BAD_TOKEN),
                }
            }
            b'T' => match parse_i32_truncating(arg) {
                Some(t) => {
                    of.exptime = store.realtime(t);
                    of.new_ttl = true;
                }
                None => fail(E_BAD_TOKEN),
            },
            b'R' => match parse_i32_truncating(arg) {
                Some(t) => of.recache_time = store.realtime(t),
                None => fail(E_BAD_TOKEN),
            },
            b'l' | b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'h' => {}
            b'v' => of.value = true,
            b'u' => of.no_update = true,
            b'q' => of.no_reply = true,
            b'F' => match parse_u32_truncating(arg) {
                Some(f) => of.client_flags = f,
                None => has_error = true,
            },
            b'C' => match parse_u64(arg) {
                Some(c) => {
                    of.req_cas = c;
                    of.has_cas = true;
                }
                None => fail(E_BAD_TOKEN),
            },
            b'M' => {
                if tok.len() != 2 {
                    fail(b"CLIENT_ERROR incorrect length for M token");
                } else {
                    of.mode = tok[1];
                }
            }
            b'J' => match parse_u64(arg) {
                Some(v) => of.initial = v,
                None => fail(b"CLIENT_ERROR invalid numeric initial value"),
            },
            b'D' => match parse_u64(arg) {
                Some(v) => of.delta = v,
                None => fail(b"CLIENT_ERROR invalid numeric delta value"),
            },
            b'I' => of.set_stale = true,
            _ => return Err(b"CLIENT_ERROR invalid flag"),
        }
    }
    if has_error {
        Err(err.unwrap_or(E_FORMAT))
    } else {
        Ok(of)
    }
}

/// The key a meta request names, as its shard is chosen: decoded when it
/// is base64, as the command itself reads it (`me <key> b`; for the others
/// a flag token starting with `b`). An undecodable key picks any shard:
/// the request fails before touching it.
fn shard_key(toks: &Tokens<'_>, me: bool) -> Key {
    let raw = toks.get(1);
    let mut key = Key::from(raw);
    let binary = if me {
        toks.ntokens() >= 4 && toks.get(2) == b"b"
    } else {
        toks.iter_from(2).any(|t| t.first() == Some(&b'b'))
    };
    if binary && raw.len() <= KEY_MAX {
        let mut out = [0u8; KEY_MAX];
        if let Some(n) = decode_key(raw, &mut out) {
            key.buf[..n].copy_from_slice(&out[..n]);
            key.len = n;
        }
    }
    key
}

/// Decodes a base64 key the way memcached's decoder does: bytes outside
/// the alphabet are skipped, the remaining count must be a non-zero
/// multiple of four, and at most two `=` pads end the input. Returns the
/// decoded length, or `None` where memcached returns 0.
fn decode_key(src: &[u8], out: &mut [u8; KEY_MAX]) -> Option<usize> {
    fn val(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            b'=' => Some(0),
            _ => None,
        }
    }
    let count = src.iter().filter(|&&c| val(c).is_some()).count();
    if count == 0 || count % 4 != 0 {
        return None;
    }
    let mut len = 0;
    let mut block = [0u8; 4];
    let mut n = 0;
    let mut pad = 0;
    for &c in src {
        let Some(v) = val(c) else { continue };
        if c == b'=' {
            pad += 1;
        }
        block[n] = v;
        n += 1;
        if n == 4 {
            let bytes = [
                (block[0] << 2) | (block[1] >> 4),
                (block[1] << 4) | (block[2] >> 2),
                (block[2] << 6) | block[3],
            ];
            let keep = match pad {
                0 => 3,
                1 => 2,
                2 => 1,
                _ => return None,
            };
            for &b in &bytes[..keep] {
                *out.get_mut(len)? = b;
                len += 1;
            }
            n = 0;
            if pad > 0 {
                break;
            }
        }
    }
    (len > 0).then_some(len)
}

/// Appends ` k<key>`, in base64 followed by ` b` for binary keys.
fn push_key(out: &mut Vec<u8>, key: &[u8], binary: bool) {
    out.extend_from_slice(b" k");
    if binary {
        let mut buf = [0u8; 400];
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(key, &mut buf)
            .unwrap_or(0);
        out.extend_from_slice(&buf[..n]);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

/// Appends the flags every meta reply reflects even without an item: the
/// opaque (`O`) and the key (`k`), in request order. Fails with
/// memcached's error when an opaque is too long.
fn push_reflected(
    line: &mut Vec<u8>,
    toks: &Tokens<'_>,
    key: &[u8],
    binary: bool,
) -> Result<(), &'static [u8]> {
    for tok in toks.iter_from(2) {
        match tok[0] {
            b'O' if tok.len() > MAX_OPAQUE => return Err(E_OPAQUE),
            b'O' => {
                line.push(b' ');
                line.extend_from_slice(tok);
            }
            b'k' => push_key(line, key, binary),
            _ => {}
        }
    }
    Ok(())
}

/// Appends ` t<remaining ttl>` (`-1` for none), with memcached's unsigned
/// wrap for items already past their expiry.
fn push_ttl(out: &mut Vec<u8>, exptime: u32, now: u32) {
    out.extend_from_slice(b" t");
    if exptime == 0 {
        out.extend_from_slice(b"-1");
    } else {
        push_u64(out, u64::from(exptime.wrapping_sub(now)));
    }
}

impl Connection {
    /// Dispatches a two-letter command starting with `m`.
    pub(super) fn meta_command<S: Shards>(
        &mut self,
        shards: &mut S,
        toks: &Tokens<'_>,
        data: &[u8],
        consumed: usize,
    ) -> Step {
        let done = Step::Done(consumed);
        let cmd = toks.get(0)[1];
        if !matches!(cmd, b'g' | b's' | b'd' | b'a' | b'e') {
            self.out(if cmd == b'n' { b"MN" } else { b"ERROR" });
            return done;
        }
        let key = shard_key(toks, cmd == b'e');
        let mut guard = self.key_shard(shards, key.as_slice());
        let store = &mut *guard;
        match cmd {
            b'g' => self.mg(store, toks),
            b's' => return self.ms(store, toks, data, consumed),
            b'd' => self.md(store, toks),
            b'a' => self.ma(store, toks),
            _ => self.me(store, toks),
        }
        done
    }

    /// Common prologue of mg/md/ma: token count, key length, flag count.
    /// Returns false after replying with an error.
    fn meta_prologue(&mut self, toks: &Tokens<'_>, too_long: &[u8], errstring: bool) -> bool {
        if toks.ntokens() < 3 {
            self.out(b"ERROR");
            return false;
        }
        if toks.get(1).len() > KEY_MAX {
            self.out_err(E_FORMAT);
            return false;
        }
        if toks.ntokens() > MAX_OPT_TOKENS {
            if errstring {
                self.out_err(too_long);
            } else {
                self.out(too_long);
            }
            return false;
        }
        true
    }

    fn mg(&mut self, store: &mut Store, toks: &Tokens<'_>) {
        if !self.meta_prologue(toks, b"CLIENT_ERROR options flags are too long", true) {
            return;
        }
        let mut key = Key::from(toks.get(1));
        let of = match preparse(store, toks, 2, &mut key) {
            Ok(of) => of,
            Err(e) => return self.out_err(e),
        };
        self.noreply = of.no_reply;
        let key = key.as_slice();

        let mut found = store.find(key);
        if self.sampler.next() {
            store.observe.topkeys.record(key);
        }
        let mut created = false;
        if found.is_none() && of.vivify && store.reserve(key.len(), 0, 0).is_ok() {
            found = store.link(key, &[], 0, 0, 0).ok();
            created = found.is_some();
        }

        let Some(mut idx) = found else {
            self.tally.miss();
            let mut line = Vec::from(&b"EN"[..]);
            if let Err(e) = push_reflected(&mut line, toks, key, of.key_binary) {
                return self.out_err(e);
            }
            return self.out(&line);
        };

        let now = store.now();
        let mut won = false;
        let mut ttl_set = false;
        let mut line = Vec::with_capacity(64);
        {
            let it = store.item(idx);
            if of.value {
                line.extend_from_slice(b"VA ");
                push_u64(&mut line, it.value().len() as u64);
            } else {
                line.extend_from_slice(b"HD");
            }
        }
        for tok in toks.iter_from(2) {
            match tok[0] {
                b'T' => {
                    ttl_set = true;
                    idx = store.set_exptime(idx, of.exptime);
                }
                b'N' if created => {
                    idx = store.set_exptime(idx, of.autoviv_exptime);
                    won = true;
                }
                b'R' => {
                    let it = store.item(idx);
                    if !it.has(bits::TOKEN_SENT)
                        && !created
                        && it.exptime() != 0
                        && it.exptime() < of.recache_time
                    {
                        won = true;
                    }
                }
                b's' => {
                    line.extend_from_slice(b" s");
                    push_u64(&mut line, store.item(idx).value().len() as u64);
                }
                b't' => push_ttl(&mut line, store.item(idx).exptime(), now),
                b'c' => {
                    line.extend_from_slice(b" c");
                    push_u64(&mut line, store.item(idx).cas());
                }
                b'f' => {
                    line.extend_from_slice(b" f");
                    push_u64(&mut line, u64::from(store.item(idx).flags()));
                }
                b'l' => {
                    line.extend_from_slice(b" l");
                    push_u64(
                        &mut line,
                        u64::from(now.wrapping_sub(store.item(idx).time())),
                    );
                }
                b'h' => {
                    line.extend_from_slice(if store.item(idx).has(bits::FETCHED) {
                        b" h1"
                    } else {
                        b" h0"
                    });
                }
                b'O' => {
                    if tok.len() > MAX_OPAQUE {
                        return self.out_err(E_OPAQUE);
                    }
                    line.push(b' ');
                    line.extend_from_slice(tok);
                }
                b'k' => {
                    let it = store.item(idx);
                    push_key(&mut line, it.key(), it.has(bits::KEY_BINARY));
                }
                _ => {}
            }
        }
        {
            let mut it = store.item_mut(idx);
            if it.has(bits::TOKEN_SENT) {
                line.extend_from_slice(b" Z");
            }
            if it.has(bits::STALE) {
                line.extend_from_slice(b" X");
                if !it.has(bits::TOKEN_SENT) {
                    won = true;
                }
            }
            if won {
                line.extend_from_slice(b" W");
                it.insert_bits(bits::TOKEN_SENT);
            }
        }
        // A hit is always answered, even with `q`. The value goes straight
        // from the item to the output buffer.
        line.extend_from_slice(b"\r\n");
        self.output.extend_from_slice(&line);
        if of.value {
            self.push_value(store.item(idx).value(), || store.shared_value(idx));
        }
        if !of.no_update {
            store.bump(idx);
        }
        let cls = store.item(idx).class();
        if ttl_set {
            store.stats.cmd_touch += 1;
            store.stats.touch_hits += 1;
            store.classes[usize::from(cls)].touch_hits += 1;
        } else {
            self.tally.hit(store, cls);
        }
        self.noreply = false;
    }

    fn ms(&mut self, store: &mut Store, toks: &Tokens<'_>, data: &[u8], consumed: usize) -> Step {
        let done = Step::Done(consumed);
        if toks.ntokens() < 3 {
            self.out(b"ERROR");
            return done;
        }
        if toks.get(1).len() > KEY_MAX || toks.ntokens() == 3 {
            self.out_err(E_FORMAT);
            return done;
        }
        if toks.ntokens() > MAX_OPT_TOKENS {
            self.out_err(b"CLIENT_ERROR options flags too long");
            return done;
        }
        let vlen = match parse_i32_truncating(toks.get(2)) {
            Some(v) if (0..=i32::MAX - 2).contains(&v) => v as usize,
            _ => {
                self.out_err(E_FORMAT);
                return done;
            }
        };
        // From here on every error swallows the data block.
        let mut key = Key::from(toks.get(1));
        let of = match preparse(store, toks, 3, &mut key) {
            Ok(of) => of,
            Err(e) => return self.ms_reject(e, vlen, consumed),
        };
        let key = key.as_slice();
        let mut ret_flags: Vec<&[u8]> = Vec::new();
        let mut err = None;
        for tok in toks.iter_from(3) {
            match tok[0] {
                b'O' => {
                    if tok.len() > MAX_OPAQUE {
                        err = Some(E_OPAQUE);
                    } else {
                        ret_flags.push(tok);
                    }
                }
                b'k' | b'c' => ret_flags.push(tok),
                _ => {}
            }
        }
        let mut mode = match of.mode {
            0 | b'S' => StoreMode::Set,
            b'E' => StoreMode::Add,
            b'A' => StoreMode::Append,
            b'P' => StoreMode::Prepend,
            b'R' => StoreMode::Replace,
            _ => {
                return self.ms_reject(b"CLIENT_ERROR invalid mode for ms M token", vlen, consumed)
            }
        };
        if of.has_cas && (mode == StoreMode::Set || mode == StoreMode::Replace) {
            mode = StoreMode::Cas;
        }
        if let Some(e) = err {
            return self.ms_reject(e, vlen, consumed);
        }
        // Refused at the line as in memcached; evicts nothing, since it runs
        // on every pass until the data block is complete.
        if let Err(e) = store.admit(key.len(), of.client_flags, vlen) {
            self.noreply = false;
            self.reject_store(store, key, e, true);
            self.swallow = vlen as u64 + 2;
            return done;
        }
        if data.len() < vlen + 2 {
            return Step::Incomplete;
        }
        let total = consumed + vlen + 2;
        // Room is made once, with the whole data block here.
        if let Err(e) = store.reserve(key.len(), of.client_flags, vlen) {
            self.noreply = false;
            self.reject_store(store, key, e, true);
            return Step::Done(total);
        }
        store.stats.cmd_set += 1;
        if &data[vlen..vlen + 2] != b"\r\n" {
            self.out_err(b"CLIENT_ERROR bad data chunk");
            return Step::Done(total);
        }
        self.noreply = of.no_reply;
        let req = StoreRequest {
            mode,
            key,
            flags: of.client_flags,
            exptime: of.exptime,
            value: &data[..vlen],
            cas: of.req_cas,
            stale_ok: of.set_stale && mode == StoreMode::Cas,
            key_binary: of.key_binary,
        };
        let cls = usize::from(crate::slab::class_of(crate::store::ntotal(
            key.len(),
            of.client_flags,
            vlen,
        )));
        store.classes[cls].cmd_set += 1;
        let res = store_item(store, &req);
        let mut line = Vec::with_capacity(32);
        let cas = match res {
            Stored::Stored(c) => {
                line.extend_from_slice(b"HD");
                c
            }
            Stored::Exists => {
                line.extend_from_slice(b"EX");
                0
            }
            Stored::NotFound => {
                line.extend_from_slice(b"NF");
                0
            }
            Stored::NotStored => {
                line.extend_from_slice(b"NS");
                0
            }
        };
        for tok in ret_flags {
            match tok[0] {
                b'O' => {
                    line.push(b' ');
                    line.extend_from_slice(tok);
                }
                b'k' => push_key(&mut line, key, of.key_binary),
                _ => {
                    line.extend_from_slice(b" c");
                    push_u64(&mut line, cas);
                }
            }
        }
        if matches!(res, Stored::Stored(_)) {
            self.out(&line);
        } else {
            self.out_err(&line);
        }
        Step::Done(total)
    }

    /// An `ms` error found after its length was parsed: reply and swallow
    /// the data block.
    fn ms_reject(&mut self, e: &[u8], vlen: usize, consumed: usize) -> Step {
        self.out_err(e);
        self.swallow = vlen as u64 + 2;
        Step::Done(consumed)
    }

    /// Common start of md and ma: the prologue, the key and its flags, and
    /// `q`. memcached answers any flag error of these two with one message,
    /// unlike mg's. Returns None after replying with an error.
    fn md_ma_start(&mut self, store: &Store, toks: &Tokens<'_>) -> Option<(Key, MetaFlags)> {
        if !self.meta_prologue(toks, b"CLIENT_ERROR options flags too long", false) {
            return None;
        }
        let mut key = Key::from(toks.get(1));
        let Ok(of) = preparse(store, toks, 2, &mut key) else {
            self.out_err(b"CLIENT_ERROR invalid or duplicate flag");
            return None;
        };
        self.noreply = of.no_reply;
        Some((key, of))
    }

    fn md(&mut self, store: &mut Store, toks: &Tokens<'_>) {
        let Some((key, of)) = self.md_ma_start(store, toks) else {
            return;
        };
        let key = key.as_slice();
        let mut flags = Vec::new();
        if let Err(e) = push_reflected(&mut flags, toks, key, of.key_binary) {
            return self.out_err(e);
        }
        let code: &[u8] = match store.find(key) {
            Some(idx) if of.has_cas && store.item(idx).cas() != of.req_cas => {
                store.stats.delete_misses += 1;
                self.noreply = false;
                b"EX"
            }
            Some(mut idx) if of.set_stale => {
                if of.new_ttl {
                    idx = store.set_exptime(idx, of.exptime);
                }
                let cas = store.next_cas();
                let mut it = store.item_mut(idx);
                it.insert_bits(bits::STALE);
                it.remove_bits(bits::TOKEN_SENT);
                it.set_cas(cas);
                b"HD"
            }
            Some(idx) => {
                let cls = usize::from(store.item(idx).class());
                store.classes[cls].delete_hits += 1;
                store.stats.delete_hits += 1;
                store.unlink(idx);
                b"HD"
            }
            None => {
                store.stats.delete_misses += 1;
                self.noreply = false;
                b"NF"
            }
        };
        let mut line = Vec::from(code);
        line.extend_from_slice(&flags);
        self.out(&line);
    }

    fn ma(&mut self, store: &mut Store, toks: &Tokens<'_>) {
        let Some((key, of)) = self.md_ma_start(store, toks) else {
            return;
        };
        let key = key.as_slice();
        let incr = match of.mode {
            0 | b'I' | b'+' => true,
            b'D' | b'-' => false,
            _ => return self.out_err(b"CLIENT_ERROR invalid mode for ma M token"),
        };
        let mut line = Vec::with_capacity(48);
        // (index, value, created, replaced)
        let mut item: Option<(u32, u64, bool, bool)> = None;
        match add_delta(store, key, incr, of.delta, of.req_cas) {
            Delta::Ok {
                value,
                idx,
                replaced,
            } => item = Some((idx, value, false, replaced)),
            Delta::NonNumeric => {
                return self
                    .out_err(b"CLIENT_ERROR cannot increment or decrement non-numeric value")
            }
            Delta::NoMemory => return self.out_err(b"SERVER_ERROR out of memory"),
            Delta::NotFound if of.vivify => {
                let mut digits = Vec::with_capacity(20);
                push_u64(&mut digits, of.initial);
                if store.reserve(key.len(), 0, digits.len()).is_err() {
                    return self.out_err(b"SERVER_ERROR Out of memory allocating new item");
                }
                let Ok(idx) = store.link(key, &[&digits], 0, 0, 0) else {
                    return self.out_err(b"SERVER_ERROR Out of memory allocating new item");
                };
                item = Some((idx, of.initial, true, false));
            }
            Delta::NotFound => {
                if incr {
                    store.stats.incr_misses += 1;
                } else {
                    store.stats.decr_misses += 1;
                }
                line.extend_from_slice(b"NF");
            }
            Delta::CasMismatch => line.extend_from_slice(b"EX"),
        }
        let now = store.now();
        if let Some((mut idx, value, created, replaced)) = item {
            // memcached 1.6.18 applies `T` (and reads `t`) on the item it
            // looked up. When the number outgrew the stored value, that
            // item was replaced by a new one, so `T` only changes what `t`
            // reports and the stored TTL is untouched. Reproduced as is.
            let mut ghost_exptime = store.item(idx).exptime();
            let mut digits = Vec::with_capacity(20);
            push_u64(&mut digits, value);
            if of.value {
                line.extend_from_slice(b"VA ");
                push_u64(&mut line, digits.len() as u64);
            } else {
                line.extend_from_slice(b"HD");
            }
            for tok in toks.iter_from(2) {
                match tok[0] {
                    b'c' => {
                        line.extend_from_slice(b" c");
                        push_u64(&mut line, store.item(idx).cas());
                    }
                    b't' if replaced => push_ttl(&mut line, ghost_exptime, now),
                    b't' => push_ttl(&mut line, store.item(idx).exptime(), now),
                    b'T' if replaced => ghost_exptime = of.exptime,
                    b'T' => idx = store.set_exptime(idx, of.exptime),
                    b'N' if created => idx = store.set_exptime(idx, of.autoviv_exptime),
                    b'O' => {
                        if tok.len() > MAX_OPAQUE {
                            return self.out_err(E_OPAQUE);
                        }
                        line.push(b' ');
                        line.extend_from_slice(tok);
                    }
                    b'k' => push_key(&mut line, key, of.key_binary),
                    _ => {}
                }
            }
            if of.value {
                line.extend_from_slice(b"\r\n");
                line.extend_from_slice(&digits);
            }
            if created {
                // memcached only applies `q` to a successful delta, not to
                // an auto-created counter.
                self.noreply = false;
            }
            self.out(&line);
        } else {
            if let Err(e) = push_reflected(&mut line, toks, key, of.key_binary) {
                return self.out_err(e);
            }
            self.out_err(&line);
        }
    }

    /// `me <key> [b]`: the debug line. memcached 1.6.18 prints `exp=` as the
    /// negated remaining TTL (fixed in 1.6.24). We reproduce 1.6.18 on
    /// purpose: our compatibility target is its exact bytes, and `me` is a
    /// debugging aid no client depends on for correctness.
    fn me(&mut self, store: &mut Store, toks: &Tokens<'_>) {
        if toks.ntokens() < 3 || toks.get(1).len() > KEY_MAX {
            return self.out(E_FORMAT);
        }
        let mut key = Key::from(toks.get(1));
        if toks.ntokens() >= 4 && toks.get(2) == b"b" {
            let mut out = [0u8; KEY_MAX];
            match decode_key(key.as_slice(), &mut out) {
                Some(n) => {
                    key.buf[..n].copy_from_slice(&out[..n]);
                    key.len = n;
                }
                None => return self.out(E_FORMAT),
            }
        }
        store.stats.cmd_meta += 1;
        let now = store.now();
        let Some(idx) = store.find(key.as_slice()) else {
            return self.out(b"EN");
        };
        let it = store.item(idx);
        let mut line = Vec::from(&b"ME "[..]);
        if it.has(bits::KEY_BINARY) {
            let mut buf = [0u8; 400];
            let n = base64::engine::general_purpose::STANDARD
                .encode_slice(it.key(), &mut buf)
                .unwrap_or(0);
            line.extend_from_slice(&buf[..n]);
        } else {
            line.extend_from_slice(it.key());
        }
        line.extend_from_slice(b" exp=");
        if it.exptime() == 0 {
            line.extend_from_slice(b"-1");
        } else {
            push_i64(&mut line, i64::from(now.wrapping_sub(it.exptime()) as i32));
        }
        line.extend_from_slice(b" la=");
        push_u64(&mut line, u64::from(now.wrapping_sub(it.time())));
        line.extend_from_slice(b" cas=");
        push_u64(&mut line, it.cas());
        line.extend_from_slice(if it.has(bits::FETCHED) {
            b" fetch=yes"
        } else {
            b" fetch=no"
        });
        line.extend_from_slice(b" cls=");
        push_u64(&mut line, u64::from(it.class()));
        line.extend_from_slice(b" size=");
        push_u64(&mut line, it.ntotal());
        self.out(&line);
    }
}
