//! The classic text commands: storage, retrieval, delete, arithmetic,
//! touch, flush_all and the small admin commands.

use crate::num::{
    parse_i32_truncating, parse_stored_u64, parse_u32_truncating, parse_u64, push_u64,
};
use crate::shards::Shards;
use crate::store::{bits, AllocError, Shutdown, Store};

use super::tokens::{words, Tokens};
use super::{Connection, PausedGet, Step};

/// memcached's `KEY_MAX_LENGTH`.
pub(crate) const KEY_MAX: usize = 250;

/// Room made in the output before each key but the last of a multiget
/// over several shards, outside the key's shard: a reply that grows while
/// its shard is held keeps other workers waiting for the reallocation. A
/// key's `VALUE` line and a small value fit; a larger value still grows
/// the reply under the shard, once. A single-key `get` makes none, so its
/// connection keeps a reply buffer of its reply's size when idle.
const RESERVE_AHEAD: usize = 2048;

/// Which storage command a data block belongs to (memcached's `NREAD_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// Result of a store attempt (memcached's `store_item_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // named after memcached's replies
pub(crate) enum Stored {
    Stored(u64),
    NotStored,
    Exists,
    NotFound,
}

/// A validated storage request whose data block has fully arrived.
pub(crate) struct StoreRequest<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub flags: u32,
    pub exptime: u32,
    pub value: &'a [u8],
    /// CAS to compare (0: none).
    pub cas: u64,
    /// `ms I`: a lower CAS stores the value as stale.
    pub stale_ok: bool,
    /// Stored with a base64 key.
    pub key_binary: bool,
}

/// Executes a storage request against the store with memcached 1.6.18's
/// `do_store_item` semantics, and logs it for `watch mutations`.
pub(crate) fn store_item(store: &mut Store, req: &StoreRequest<'_>) -> Stored {
    let res = store_item_unlogged(store, req);
    crate::log::stored(store, req, res);
    res
}

fn store_item_unlogged(store: &mut Store, req: &StoreRequest<'_>) -> Stored {
    let old = store.find(req.key);
    let Some(old) = old else {
        return match req.mode {
            StoreMode::Set | StoreMode::Add => link_new(store, req, req.exptime, 0, &[req.value]),
            StoreMode::Cas => {
                store.stats.cas_misses += 1;
                Stored::NotFound
            }
            StoreMode::Replace | StoreMode::Append | StoreMode::Prepend => Stored::NotStored,
        };
    };
    #[derive(PartialEq)]
    enum CasResult {
        None,
        Match,
        Stale,
        BadVal,
    }
    let old_cas = store.item(old).cas();
    // Without CAS values (`-C`) memcached never puts the request's CAS on
    // the new item, so it compares as "none" (and a `cas` is `EXISTS`).
    let req_cas = if store.config().cas_enabled {
        req.cas
    } else {
        0
    };
    let cas_res = if req_cas == 0 {
        CasResult::None
    } else if req_cas == old_cas {
        CasResult::Match
    } else if req.stale_ok && req_cas < old_cas {
        CasResult::Stale
    } else {
        CasResult::BadVal
    };
    let cls = usize::from(store.item(old).class());
    match req.mode {
        StoreMode::Add => {
            store.update(old);
            Stored::NotStored
        }
        StoreMode::Cas => match cas_res {
            CasResult::Match => {
                store.classes[cls].cas_hits += 1;
                store.stats.cas_hits += 1;
                store.unlink(old);
                link_new(store, req, req.exptime, 0, &[req.value])
            }
            CasResult::Stale => {
                // A late write with an older CAS: stored, but it keeps the
                // old TTL and stays stale (and keeps any sent win token).
                store.classes[cls].cas_hits += 1;
                store.stats.cas_hits += 1;
                let (exptime, token) = {
                    let it = store.item(old);
                    (it.exptime(), it.bits() & bits::TOKEN_SENT)
                };
                store.unlink(old);
                link_new(store, req, exptime, bits::STALE | token, &[req.value])
            }
            CasResult::None | CasResult::BadVal => {
                store.classes[cls].cas_badval += 1;
                store.stats.cas_badval += 1;
                Stored::Exists
            }
        },
        StoreMode::Append | StoreMode::Prepend => {
            if cas_res != CasResult::None && cas_res != CasResult::Match {
                return Stored::Exists;
            }
            let (flags, exptime, old_len, kb) = {
                let it = store.item(old);
                (
                    it.flags(),
                    it.exptime(),
                    it.value().len(),
                    it.bits() & bits::KEY_BINARY,
                )
            };
            let total = old_len + req.value.len();
            if !store.size_ok(req.key.len(), flags, total) {
                return Stored::NotStored;
            }
            let old_value = alloc::vec::Vec::from(store.item(old).value());
            let parts: [&[u8]; 2] = if req.mode == StoreMode::Append {
                [&old_value, req.value]
            } else {
                [req.value, &old_value]
            };
            store.unlink(old);
            let appended = StoreRequest {
                flags,
                key_binary: kb != 0 || req.key_binary,
                ..*req
            };
            link_new(store, &appended, exptime, 0, &parts)
        }
        StoreMode::Set | StoreMode::Replace => {
            store.unlink(old);
            link_new(store, req, req.exptime, 0, &[req.value])
        }
    }
}

fn link_new(
    store: &mut Store,
    req: &StoreRequest<'_>,
    exptime: u32,
    extra_bits: u8,
    parts: &[&[u8]],
) -> Stored {
    let vlen = parts.iter().map(|p| p.len()).sum();
    if store.reserve(req.key.len(), req.flags, vlen).is_err() {
        return Stored::NotStored;
    }
    let state = if req.key_binary {
        extra_bits | bits::KEY_BINARY
    } else {
        extra_bits
    };
    match store.link(req.key, parts, req.flags, exptime, state) {
        Ok(idx) => Stored::Stored(store.item(idx).cas()),
        Err(_) => Stored::NotStored,
    }
}

/// Outcome of incr/decr (memcached's `delta_result_type`).
pub(crate) enum Delta {
    /// New value, the item's index, and whether a new item replaced the old
    /// one (the number outgrew the stored value's length).
    Ok {
        value: u64,
        idx: u32,
        replaced: bool,
    },
    NonNumeric,
    NotFound,
    CasMismatch,
    NoMemory,
}

/// memcached's `do_add_delta`: 64-bit wrap on incr, floor at 0 on decr,
/// in-place update padded with spaces when the new number fits.
pub(crate) fn add_delta(store: &mut Store, key: &[u8], incr: bool, delta: u64, cas: u64) -> Delta {
    let Some(idx) = store.find(key) else {
        return Delta::NotFound;
    };
    let it = store.item(idx);
    if it.value().is_empty() {
        return Delta::NonNumeric;
    }
    if cas != 0 && it.cas() != cas {
        return Delta::CasMismatch;
    }
    let Some(old) = parse_stored_u64(it.value()) else {
        return Delta::NonNumeric;
    };
    let value = if incr {
        old.wrapping_add(delta)
    } else {
        old.saturating_sub(delta)
    };
    let cls = usize::from(it.class());
    let mut digits = alloc::vec::Vec::with_capacity(20);
    push_u64(&mut digits, value);
    // Like memcached, the number is written in place only where nobody
    // is sending the value; otherwise a new item replaces it (and the
    // senders keep the bytes they started with).
    let fits = digits.len() <= it.value().len() && !store.value_in_use(idx);
    if incr {
        store.stats.incr_hits += 1;
        store.classes[cls].incr_hits += 1;
    } else {
        store.stats.decr_hits += 1;
        store.classes[cls].decr_hits += 1;
    }
    if fits {
        let cas = store.next_cas();
        let mut it = store.item_mut(idx);
        it.set_cas(cas);
        let v = it.value_mut();
        v[..digits.len()].copy_from_slice(&digits);
        v[digits.len()..].fill(b' ');
        store.update(idx);
        Delta::Ok {
            value,
            idx,
            replaced: false,
        }
    } else {
        let it = store.item(idx);
        let (flags, exptime, kb) = (it.flags(), it.exptime(), it.bits() & bits::KEY_BINARY);
        let key = alloc::vec::Vec::from(it.key());
        // memcached allocates the new item while the old one is linked and,
        // when that fails, leaves the old one as it was. `admit` refuses
        // exactly what `reserve` would, without evicting a live item, so the
        // counter survives a refusal.
        if store.admit(key.len(), flags, digits.len()).is_err() {
            return Delta::NoMemory;
        }
        // Reclaiming expired items may have moved the counter's record.
        if let Some(idx) = store.find_unlogged(&key) {
            store.unlink(idx);
        }
        if store.reserve(key.len(), flags, digits.len()).is_err() {
            return Delta::NoMemory;
        }
        let Ok(idx) = store.link(&key, &[&digits], flags, exptime, kb) else {
            return Delta::NoMemory;
        };
        Delta::Ok {
            value,
            idx,
            replaced: true,
        }
    }
}

impl Connection {
    /// Dispatches one command line (memcached's `process_command_ascii`).
    /// `data` is the input after the line, for storage commands.
    pub(super) fn command<S: Shards>(
        &mut self,
        shards: &mut S,
        toks: &Tokens<'_>,
        line: &[u8],
        data: &[u8],
        consumed: usize,
    ) -> Step {
        let name = toks.get(0);
        let n = toks.ntokens();
        let done = Step::Done(consumed);
        if name.len() == 2 && name[0] == b'm' {
            return self.meta_command(shards, toks, data, consumed);
        }
        match name {
            b"get" | b"bget" | b"gets" | b"gat" | b"gats" => {
                if n < 3 {
                    self.out(b"ERROR");
                    return done;
                }
                let cas = name == b"gets" || name == b"gats";
                let touch = name.starts_with(b"ga");
                self.get_command(shards, toks, line, consumed, cas, touch)
            }
            b"set" | b"add" | b"replace" | b"append" | b"prepend" => {
                if n != 6 && n != 7 {
                    self.out(b"ERROR");
                    return done;
                }
                let mode = match name {
                    b"set" => StoreMode::Set,
                    b"add" => StoreMode::Add,
                    b"replace" => StoreMode::Replace,
                    b"append" => StoreMode::Append,
                    _ => StoreMode::Prepend,
                };
                let mut store = self.key_shard(shards, toks.get(1));
                self.update_command(&mut store, toks, data, consumed, mode)
            }
            b"cas" => {
                if n != 7 && n != 8 {
                    self.out(b"ERROR");
                    return done;
                }
                let mut store = self.key_shard(shards, toks.get(1));
                self.update_command(&mut store, toks, data, consumed, StoreMode::Cas)
            }
            b"incr" | b"decr" => {
                if n != 4 && n != 5 {
                    self.out(b"ERROR");
                    return done;
                }
                let mut store = self.key_shard(shards, toks.get(1));
                self.arithmetic_command(&mut store, toks, name == b"incr");
                done
            }
            b"delete" => {
                if !(3..=5).contains(&n) {
                    self.out(b"ERROR");
                    return done;
                }
                let mut store = self.key_shard(shards, toks.get(1));
                self.delete_command(&mut store, toks);
                done
            }
            b"touch" => {
                if n != 4 && n != 5 {
                    self.out(b"ERROR");
                    return done;
                }
                let mut store = self.key_shard(shards, toks.get(1));
                self.touch_command(&mut store, toks);
                done
            }
            b"stats" => {
                self.stats_command(shards, toks);
                done
            }
            b"flush_all" => {
                if !(2..=4).contains(&n) {
                    self.out(b"ERROR");
                    return done;
                }
                self.flush_command(shards, toks);
                done
            }
            b"version" => {
                let mut v = alloc::vec::Vec::from(&b"VERSION "[..]);
                v.extend_from_slice(shards.config().version.as_bytes());
                self.out(&v);
                done
            }
            b"quit" => {
                self.quit = true;
                Step::Close
            }
            b"verbosity" => {
                if n != 3 && n != 4 {
                    self.out(b"ERROR");
                    return done;
                }
                self.noreply = toks.noreply();
                match parse_u32_truncating(toks.get(1)) {
                    Some(level) => {
                        for i in 0..shards.count() {
                            self.nth_shard(shards, i).verbosity = level.min(2);
                        }
                        self.out(b"OK");
                    }
                    None => self.out(b"CLIENT_ERROR bad command line format"),
                }
                done
            }
            b"shutdown" => {
                // memcached's `process_shutdown_command`: the connection
                // closes without a reply and the server stops.
                if !shards.config().shutdown_enabled {
                    self.out(b"ERROR: shutdown not enabled");
                    return done;
                }
                let how = match (n, toks.get(1)) {
                    (2, _) => Shutdown::Now,
                    (3, b"graceful") => Shutdown::Graceful,
                    _ => {
                        self.out(b"CLIENT_ERROR invalid shutdown mode");
                        return done;
                    }
                };
                self.home_shard(shards).request_shutdown(how);
                Step::Close
            }
            b"lru_crawler" => self.lru_crawler_command(shards, toks, consumed),
            b"watch" => self.watch_command(shards, toks, consumed),
            b"cache_memlimit" => {
                if n != 3 && n != 4 {
                    self.out(b"ERROR");
                    return done;
                }
                self.noreply = toks.noreply();
                match parse_u32_truncating(toks.get(1)) {
                    None => self.out(b"ERROR"),
                    Some(mb) if mb < 8 => {
                        self.out(b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m")
                    }
                    Some(mb) if mb > 1_000_000_000 => {
                        self.out(b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes")
                    }
                    Some(mb) => {
                        let share = u64::from(mb) * 1024 * 1024 / shards.count() as u64;
                        for i in 0..shards.count() {
                            self.nth_shard(shards, i).set_memory_limit(share);
                        }
                        self.out(b"OK");
                    }
                }
                done
            }
            _ => {
                // memcached hangs up on HTTP requests sent to its port.
                if toks.get(n - 2).starts_with(b"HTTP/") {
                    return Step::Close;
                }
                self.out(b"ERROR");
                done
            }
        }
    }

    /// `set`/`add`/`replace`/`append`/`prepend`/`cas` (memcached's
    /// `process_update_command` + `complete_nread_ascii`).
    fn update_command(
        &mut self,
        store: &mut Store,
        toks: &Tokens<'_>,
        data: &[u8],
        consumed: usize,
        mode: StoreMode,
    ) -> Step {
        self.noreply = toks.noreply();
        let done = Step::Done(consumed);
        let key = toks.get(1);
        if key.len() > KEY_MAX {
            self.out(b"CLIENT_ERROR bad command line format");
            return done;
        }
        let (Some(flags), Some(exptime), Some(vlen)) = (
            parse_u32_truncating(toks.get(2)),
            parse_i32_truncating(toks.get(3)),
            parse_i32_truncating(toks.get(4)),
        ) else {
            self.out(b"CLIENT_ERROR bad command line format");
            return done;
        };
        let mut req_cas = 0;
        if mode == StoreMode::Cas {
            match parse_u64(toks.get(5)) {
                Some(c) => req_cas = c,
                None => {
                    self.out(b"CLIENT_ERROR bad command line format");
                    return done;
                }
            }
        }
        if !(0..=i32::MAX - 2).contains(&vlen) {
            self.out(b"CLIENT_ERROR bad command line format");
            return done;
        }
        let vlen = vlen as usize;
        let exptime = store.realtime(exptime);
        // A request that cannot be stored is refused at its line, as
        // memcached does, rather than after buffering its data block. This
        // check runs again on every pass until the data block is complete,
        // so it evicts nothing.
        if let Err(e) = store.admit(key.len(), flags, vlen) {
            store.observe.prefixes.record_set(key);
            crate::log::refused(store, key, mode, e);
            self.reject_store(store, key, e, mode == StoreMode::Set);
            self.swallow = vlen as u64 + 2;
            return done;
        }
        if data.len() < vlen + 2 {
            // Nothing has been said or changed yet; the whole request is
            // parsed again once its data block is complete.
            self.noreply = false;
            return Step::Incomplete;
        }
        let total = consumed + vlen + 2;
        store.observe.prefixes.record_set(key);
        // Room is made once, now that the data block is here: a data block
        // trickling in over many passes must not evict on each of them.
        if let Err(e) = store.reserve(key.len(), flags, vlen) {
            crate::log::refused(store, key, mode, e);
            self.reject_store(store, key, e, mode == StoreMode::Set);
            return Step::Done(total);
        }
        store.stats.cmd_set += 1;
        if &data[vlen..vlen + 2] != b"\r\n" {
            self.out(b"CLIENT_ERROR bad data chunk");
            return Step::Done(total);
        }
        let req = StoreRequest {
            mode,
            key,
            flags,
            exptime,
            value: &data[..vlen],
            cas: req_cas,
            stale_ok: false,
            key_binary: false,
        };
        let cls = usize::from(crate::slab::class_of(crate::store::ntotal(
            key.len(),
            flags,
            vlen,
        )));
        store.classes[cls].cmd_set += 1;
        match store_item(store, &req) {
            Stored::Stored(_) => self.out(b"STORED"),
            Stored::NotStored => self.out(b"NOT_STORED"),
            Stored::Exists => self.out(b"EXISTS"),
            Stored::NotFound => self.out(b"NOT_FOUND"),
        }
        Step::Done(total)
    }

    /// Replies to a data block that cannot be stored. For `set`, the key's
    /// old value is removed so it is never served stale.
    pub(super) fn reject_store(
        &mut self,
        store: &mut Store,
        key: &[u8],
        e: AllocError,
        delete_old: bool,
    ) {
        match e {
            AllocError::TooLarge => {
                store.stats.store_too_large += 1;
                self.out(b"SERVER_ERROR object too large for cache");
            }
            AllocError::NoMemory => {
                store.stats.store_no_memory += 1;
                self.out(b"SERVER_ERROR out of memory storing object");
            }
        }
        if delete_old {
            if let Some(idx) = store.find(key) {
                store.unlink(idx);
            }
        }
    }

    /// `get`/`gets`/`gat`/`gats`.
    fn get_command<S: Shards>(
        &mut self,
        shards: &mut S,
        toks: &Tokens<'_>,
        line: &[u8],
        consumed: usize,
        cas: bool,
        touch: bool,
    ) -> Step {
        let mut first_key = 1;
        let mut touch_exp = None;
        if touch {
            match parse_i32_truncating(toks.get(1)) {
                Some(e) => touch_exp = Some(self.home_shard(shards).realtime(e)),
                None => {
                    self.out(b"CLIENT_ERROR invalid exptime argument");
                    return Step::Done(consumed);
                }
            }
            first_key = 2;
        }
        let cursor = toks.offset(first_key);
        // memcached drops every VALUE already produced when a key is too
        // long, but the lookups before it still happen. (It also drops the
        // unsent replies of earlier pipelined commands, which depends on
        // read boundaries and loses replies; that part is not copied, so
        // replies stay independent of how the input was split.)
        let keys = &line[cursor..];
        if let Some(bad) = words(keys).position(|(_, k)| k.len() > KEY_MAX) {
            for (_, k) in words(keys).take(bad) {
                let mut store = self.key_shard(shards, k);
                self.lookup_one(&mut store, k, touch_exp);
            }
            self.out(b"CLIENT_ERROR bad command line format");
            return Step::Done(consumed);
        }
        let p = PausedGet {
            cursor,
            line_len: line.len(),
            consumed,
            cas,
            touch: touch_exp,
        };
        self.run_get(shards, line, p)
    }

    /// Continues a multiget that stopped at the high-water mark.
    pub(super) fn resume_get<S: Shards>(
        &mut self,
        shards: &mut S,
        pos: usize,
        p: PausedGet,
    ) -> Step {
        let input = core::mem::take(&mut self.input);
        let line = &input[pos..pos + p.line_len];
        let step = self.run_get(shards, line, p);
        self.input = input;
        step
    }

    /// The keys of a multiget, each under its own shard only (a cache of
    /// one shard is taken once for them all).
    fn run_get<S: Shards>(&mut self, shards: &mut S, line: &[u8], mut p: PausedGet) -> Step {
        let hwm = shards.config().output_high_water;
        if shards.count() == 1 {
            let mut store = self.nth_shard(shards, 0);
            return self.get_keys(&mut store, line, p, hwm);
        }
        while let Some((off, key)) = words(&line[p.cursor..]).next() {
            p.cursor += off + key.len();
            let more = words(&line[p.cursor..]).next().is_some();
            if more {
                self.output.reserve_ahead(RESERVE_AHEAD);
            }
            let mut guard = self.key_shard(shards, key);
            self.get_key(&mut guard, key, &p);
            if more && self.pending_len() >= hwm {
                self.paused = Some(p);
                return Step::Paused;
            }
        }
        self.output.extend_from_slice(b"END\r\n");
        Step::Done(p.consumed)
    }

    /// [`run_get`](Connection::run_get) over one store, held throughout.
    fn get_keys(&mut self, store: &mut Store, line: &[u8], mut p: PausedGet, hwm: usize) -> Step {
        while let Some((off, key)) = words(&line[p.cursor..]).next() {
            p.cursor += off + key.len();
            self.get_key(store, key, &p);
            if self.pending_len() >= hwm && words(&line[p.cursor..]).next().is_some() {
                self.paused = Some(p);
                return Step::Paused;
            }
        }
        self.output.extend_from_slice(b"END\r\n");
        Step::Done(p.consumed)
    }

    /// One key of a get-family command: its `VALUE` lines, if it is there.
    fn get_key(&mut self, store: &mut Store, key: &[u8], p: &PausedGet) {
        let Some(idx) = self.lookup_one(store, key, p.touch) else {
            return;
        };
        let it = store.item(idx);
        self.output.extend_from_slice(b"VALUE ");
        self.output.extend_from_slice(it.key());
        self.output.push(b' ');
        push_u64(&mut self.output, u64::from(it.flags()));
        self.output.push(b' ');
        push_u64(&mut self.output, it.value().len() as u64);
        if p.cas {
            self.output.push(b' ');
            push_u64(&mut self.output, it.cas());
        }
        self.output.extend_from_slice(b"\r\n");
        self.push_value(it.value(), || store.shared_value(idx));
    }

    /// One key of a get-family command: lookup, touch, bump and counters.
    pub(super) fn lookup_one(
        &mut self,
        store: &mut Store,
        key: &[u8],
        touch: Option<u32>,
    ) -> Option<u32> {
        // gat/gats count as touches only (memcached 1.6.18 leaves cmd_get);
        // gets are counted in the tally (see `tally`).
        let mut found = store.find(key);
        let sampled = self.sampler.next();
        store.observe.fetched(key, found.is_some(), sampled);
        match (found, touch) {
            (Some(idx), Some(exp)) => {
                let idx = store.set_exptime(idx, exp);
                found = Some(idx);
                store.bump(idx);
                store.stats.cmd_touch += 1;
                store.stats.touch_hits += 1;
                let cls = usize::from(store.item(idx).class());
                store.classes[cls].touch_hits += 1;
            }
            (Some(idx), None) => {
                store.bump(idx);
                let cls = store.item(idx).class();
                self.tally.hit(store, cls);
            }
            (None, Some(_)) => {
                store.stats.cmd_touch += 1;
                store.stats.touch_misses += 1;
            }
            (None, None) => self.tally.miss(),
        }
        found
    }

    fn arithmetic_command(&mut self, store: &mut Store, toks: &Tokens<'_>, incr: bool) {
        self.noreply = toks.noreply();
        let key = toks.get(1);
        if key.len() > KEY_MAX {
            self.out(b"CLIENT_ERROR bad command line format");
            return;
        }
        let Some(delta) = parse_u64(toks.get(2)) else {
            self.out(b"CLIENT_ERROR invalid numeric delta argument");
            return;
        };
        match add_delta(store, key, incr, delta, 0) {
            Delta::Ok { value, .. } => {
                let mut v = alloc::vec::Vec::with_capacity(20);
                push_u64(&mut v, value);
                self.out(&v);
            }
            Delta::NonNumeric => {
                self.out(b"CLIENT_ERROR cannot increment or decrement non-numeric value")
            }
            Delta::NoMemory => self.out(b"SERVER_ERROR out of memory"),
            Delta::NotFound | Delta::CasMismatch => {
                if incr {
                    store.stats.incr_misses += 1;
                } else {
                    store.stats.decr_misses += 1;
                }
                self.out(b"NOT_FOUND");
            }
        }
    }

    fn delete_command(&mut self, store: &mut Store, toks: &Tokens<'_>) {
        let n = toks.ntokens();
        if n > 3 {
            let hold_is_zero = toks.get(2) == b"0";
            self.noreply = toks.noreply();
            let sets_noreply = self.noreply;
            let valid = (n == 4 && (hold_is_zero || sets_noreply))
                || (n == 5 && hold_is_zero && sets_noreply);
            if !valid {
                self.out(b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]");
                return;
            }
        }
        let key = toks.get(1);
        if key.len() > KEY_MAX {
            self.out(b"CLIENT_ERROR bad command line format");
            return;
        }
        store.observe.prefixes.record_delete(key);
        match store.find(key) {
            Some(idx) => {
                let cls = usize::from(store.item(idx).class());
                store.classes[cls].delete_hits += 1;
                store.stats.delete_hits += 1;
                store.unlink(idx);
                self.out(b"DELETED");
            }
            None => {
                store.stats.delete_misses += 1;
                self.out(b"NOT_FOUND");
            }
        }
    }

    fn touch_command(&mut self, store: &mut Store, toks: &Tokens<'_>) {
        self.noreply = toks.noreply();
        let key = toks.get(1);
        if key.len() > KEY_MAX {
            self.out(b"CLIENT_ERROR bad command line format");
            return;
        }
        let Some(e) = parse_i32_truncating(toks.get(2)) else {
            self.out(b"CLIENT_ERROR invalid exptime argument");
            return;
        };
        let exptime = store.realtime(e);
        store.stats.cmd_touch += 1;
        match store.find(key) {
            Some(idx) => {
                store.bump(idx);
                let idx = store.set_exptime(idx, exptime);
                store.stats.touch_hits += 1;
                let cls = usize::from(store.item(idx).class());
                store.classes[cls].touch_hits += 1;
                self.out(b"TOUCHED");
            }
            None => {
                store.stats.touch_misses += 1;
                self.out(b"NOT_FOUND");
            }
        }
    }

    fn flush_command<S: Shards>(&mut self, shards: &mut S, toks: &Tokens<'_>) {
        self.noreply = toks.noreply();
        self.home_shard(shards).stats.cmd_flush += 1;
        if !shards.config().flush_enabled {
            self.out(b"CLIENT_ERROR flush_all not allowed");
            return;
        }
        let mut delay = 0;
        if toks.ntokens() != if self.noreply { 3 } else { 2 } {
            match parse_i32_truncating(toks.get(1)) {
                Some(d) => delay = d,
                None => {
                    self.out(b"CLIENT_ERROR invalid exptime argument");
                    return;
                }
            }
        }
        self.flush_all(shards, i64::from(delay));
        self.out(b"OK");
    }

    /// Flushes every shard alike: an immediate flush's CAS bound is drawn
    /// once, as memcached draws one.
    pub(super) fn flush_all<S: Shards>(&self, shards: &mut S, delay: i64) {
        let mut cas = None;
        for i in 0..shards.count() {
            cas = self.nth_shard(shards, i).flush(delay, cas);
        }
    }
}
