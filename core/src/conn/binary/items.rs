//! Binary item commands: get/getk/touch/gat/gatk, set/add/replace,
//! append/prepend, delete and increment/decrement (and their quiet forms),
//! with memcached 1.6.18's statuses, CAS rules and counters.

use alloc::vec::Vec;

use crate::conn::text::{add_delta, store_item, Delta, StoreMode, StoreRequest, Stored};
use crate::conn::{Connection, Step};
use crate::num::push_u64;
use crate::slab;
use crate::store::{ntotal, AllocError, Store};

use super::{be_u32, be_u64, op, swallow_len, Request, Status};

impl Connection {
    /// get, getk, touch, gat, gatk and their quiet forms (memcached's
    /// `process_bin_get_or_touch`). Hits are always answered; misses only
    /// by the non-quiet forms, with the key for getk/gatk.
    pub(super) fn bin_get(&mut self, store: &mut Store, req: &Request<'_>) {
        let touch = matches!(req.cmd, op::TOUCH | op::GAT | op::GATK);
        let with_key = matches!(req.cmd, op::GETK | op::GATK);
        let exptime = touch.then(|| store.realtime_wide(i64::from(be_u32(req.extras))));
        let Some(idx) = self.lookup_one(store, req.key, exptime) else {
            if req.quiet {
                return;
            }
            if with_key {
                let klen = req.key.len();
                self.bin_header(
                    req,
                    Status::KeyNotFound as u16,
                    0,
                    klen as u16,
                    klen as u32,
                    0,
                );
                self.output.extend_from_slice(req.key);
            } else {
                self.bin_error(req, Status::KeyNotFound);
            }
            return;
        };
        let it = store.item(idx);
        let value = if req.cmd == op::TOUCH {
            &[][..]
        } else {
            it.value()
        };
        let key = if with_key { req.key } else { &[][..] };
        let body = 4 + key.len() + value.len();
        self.bin_header(req, 0, 4, key.len() as u16, body as u32, it.cas());
        self.output.extend_from_slice(&it.flags().to_be_bytes());
        self.output.extend_from_slice(key);
        self.push_raw_value(value, || store.shared_value(idx));
    }

    /// set, add, replace, append, prepend and their quiet forms (memcached's
    /// `process_bin_update`, `process_bin_append_prepend` and
    /// `complete_update_bin`). A value that cannot be stored is refused
    /// once its header is in, and swallowed, as memcached does; otherwise
    /// the request waits for its whole value. A CAS in the header makes
    /// set/add/replace a compare-and-swap; append/prepend compare it too.
    pub(super) fn bin_store(&mut self, store: &mut Store, req: &Request<'_>, rest: &[u8]) -> Step {
        let fixed = req.h.fixed_len();
        let append = matches!(req.cmd, op::APPEND | op::PREPEND);
        let (flags, exptime) = if append {
            (0, 0)
        } else {
            (be_u32(req.extras), be_u32(&req.extras[4..]))
        };
        let vlen = req.h.value_len();
        let admitted = match usize::try_from(vlen) {
            Ok(n) => store.admit(req.key.len(), flags, n).map(|()| n),
            Err(_) => Err(AllocError::TooLarge),
        };
        let vlen = match admitted {
            Ok(n) => n,
            Err(e) => {
                // A refused store counts as a set in `stats detail`, as in
                // memcached, which counts before allocating.
                store.observe.prefixes.record_set(req.key);
                self.reject_bin_store(store, req, e);
                self.swallow = swallow_len(vlen);
                return Step::Done(fixed);
            }
        };
        if rest.len() < vlen {
            return Step::Incomplete;
        }
        // Counted once the value is here: an incomplete request runs
        // again on every pass.
        store.observe.prefixes.record_set(req.key);
        // Room is made once, when the value is complete (see `admit`).
        if let Err(e) = store.reserve(req.key.len(), flags, vlen) {
            self.reject_bin_store(store, req, e);
            return Step::Done(fixed + vlen);
        }
        store.stats.cmd_set += 1;
        let cls = usize::from(slab::class_of(ntotal(req.key.len(), flags, vlen)));
        store.classes[cls].cmd_set += 1;
        // Under -C memcached drops the request's CAS with the item's.
        let cas = if store.config().cas_enabled {
            req.h.cas
        } else {
            0
        };
        let mode = match req.cmd {
            op::APPEND => StoreMode::Append,
            op::PREPEND => StoreMode::Prepend,
            _ if cas != 0 => StoreMode::Cas,
            op::ADD => StoreMode::Add,
            op::REPLACE => StoreMode::Replace,
            _ => StoreMode::Set,
        };
        let sreq = StoreRequest {
            mode,
            key: req.key,
            flags,
            exptime: store.realtime_wide(i64::from(exptime)),
            value: &rest[..vlen],
            cas,
            stale_ok: false,
            key_binary: false,
        };
        match store_item(store, &sreq) {
            Stored::Stored(cas) if !req.quiet => self.bin_reply(req, cas, b""),
            Stored::Stored(_) => {}
            Stored::Exists => self.bin_error(req, Status::KeyExists),
            Stored::NotFound => self.bin_error(req, Status::KeyNotFound),
            Stored::NotStored => self.bin_error(
                req,
                match mode {
                    StoreMode::Add => Status::KeyExists,
                    StoreMode::Replace => Status::KeyNotFound,
                    _ => Status::NotStored,
                },
            ),
        }
        Step::Done(fixed + vlen)
    }

    /// Replies to a value that cannot be stored. Unlike the text protocol,
    /// memcached's binary path counts neither `store_too_large` nor
    /// `store_no_memory`. A failed `set` removes the key's old value so it
    /// is never served stale.
    fn reject_bin_store(&mut self, store: &mut Store, req: &Request<'_>, e: AllocError) {
        match e {
            AllocError::TooLarge => self.bin_error(req, Status::TooLarge),
            AllocError::NoMemory => {
                self.bin_error_text(req, Status::OutOfMemory, b"Out of memory allocating item")
            }
        }
        if req.cmd == op::SET {
            if let Some(idx) = store.find(req.key) {
                store.unlink(idx);
            }
        }
    }

    /// delete and deleteq (memcached's `process_bin_delete`): a non-zero
    /// CAS must match the item's.
    pub(super) fn bin_delete(&mut self, store: &mut Store, req: &Request<'_>) {
        store.observe.prefixes.record_delete(req.key);
        let Some(idx) = store.find(req.key) else {
            store.stats.delete_misses += 1;
            return self.bin_error(req, Status::KeyNotFound);
        };
        if req.h.cas != 0 && req.h.cas != store.item(idx).cas() {
            return self.bin_error(req, Status::KeyExists);
        }
        let cls = usize::from(store.item(idx).class());
        store.classes[cls].delete_hits += 1;
        store.stats.delete_hits += 1;
        store.unlink(idx);
        if !req.quiet {
            self.bin_reply(req, 0, b"");
        }
    }

    /// increment, decrement and their quiet forms (memcached's
    /// `complete_incr_bin`): extras are delta, initial value and exptime;
    /// a miss creates the counter at the initial value unless the exptime
    /// is `0xffffffff`. The reply's body is the new value, 8 bytes.
    pub(super) fn bin_arith(&mut self, store: &mut Store, req: &Request<'_>) {
        let e = req.extras;
        let (delta, initial, exptime) = (be_u64(e), be_u64(&e[8..]), be_u32(&e[16..]));
        let incr = req.cmd == op::INCREMENT;
        match add_delta(store, req.key, incr, delta, req.h.cas) {
            Delta::Ok { value, idx, .. } => {
                if !req.quiet {
                    let cas = store.item(idx).cas();
                    self.bin_reply(req, cas, &value.to_be_bytes());
                }
            }
            Delta::NonNumeric => self.bin_error(req, Status::NonNumeric),
            Delta::NoMemory => self.bin_error_text(
                req,
                Status::OutOfMemory,
                b"Out of memory incrementing value",
            ),
            Delta::CasMismatch => self.bin_error(req, Status::KeyExists),
            Delta::NotFound if exptime != u32::MAX => {
                self.bin_arith_create(store, req, initial, exptime)
            }
            Delta::NotFound => {
                if incr {
                    store.stats.incr_misses += 1;
                } else {
                    store.stats.decr_misses += 1;
                }
                self.bin_error(req, Status::KeyNotFound);
            }
        }
    }

    /// Creates a missing counter at `initial`, as an `add` would.
    fn bin_arith_create(
        &mut self,
        store: &mut Store,
        req: &Request<'_>,
        initial: u64,
        exptime: u32,
    ) {
        let mut digits = Vec::with_capacity(20);
        push_u64(&mut digits, initial);
        if store.reserve(req.key.len(), 0, digits.len()).is_err() {
            return self.bin_error_text(
                req,
                Status::OutOfMemory,
                b"Out of memory allocating new item",
            );
        }
        let sreq = StoreRequest {
            mode: StoreMode::Add,
            key: req.key,
            flags: 0,
            exptime: store.realtime_wide(i64::from(exptime)),
            value: &digits,
            cas: 0,
            stale_ok: false,
            key_binary: false,
        };
        match store_item(store, &sreq) {
            Stored::Stored(cas) if !req.quiet => self.bin_reply(req, cas, &initial.to_be_bytes()),
            Stored::Stored(_) => {}
            _ => self.bin_error(req, Status::NotStored),
        }
    }
}
