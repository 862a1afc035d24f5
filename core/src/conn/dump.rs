//! Key dumps: `lru_crawler metadump` and `stats cachedump`, with
//! memcached 1.6.18's line formats.
//!
//! A metadump lists every live item of the selected classes (memcached
//! lists what its crawler happens to visit, capped), in (class, key hash,
//! key) order; in a cache of several shards, class by class and within a
//! class shard by shard. It is streamed: lines go into the connection's output until
//! the high-water mark, the request pauses like a multiget, and the next
//! `process` call goes on from the last item written. A cachedump is
//! bounded instead, as memcached bounds it: at most 2 MiB of lines.

use alloc::vec::Vec;

use crate::num::{parse_u32_truncating, push_u64};
use crate::shards::Shards;
use crate::slab::MAX_CLASSES;
use crate::store::{ClassSet, DumpPos, ItemRef, Store};

use super::tokens::Tokens;
use super::{Connection, Step};

/// Items taken from the store per ordered scan of it. Each scan reads the
/// whole store, so a batch should hold at least a high-water mark's worth
/// of lines (about 100 bytes each).
const BATCH: usize = 16 * 1024;

/// memcached's cachedump buffer: lines stop before the reply (with its
/// `END\r\n` and a NUL) would pass 2 MiB.
const CACHEDUMP_MAX: usize = 2 * 1024 * 1024;

/// A metadump interrupted by back-pressure. Its request line stays at the
/// front of the input until the dump completes.
pub(super) struct PausedDump {
    classes: ClassSet,
    /// The class being listed (several shards only).
    class: u8,
    /// The shard being listed.
    shard: usize,
    /// The last item listed (or skipped as expired).
    after: Option<DumpPos>,
    /// Length of the request line including its line ending.
    consumed: usize,
}

impl Connection {
    /// Starts a metadump of `classes` (the checks before it are done).
    pub(super) fn start_metadump<S: Shards>(
        &mut self,
        shards: &mut S,
        classes: ClassSet,
        consumed: usize,
    ) -> Step {
        self.home_shard(shards).count_dump_start();
        let d = PausedDump {
            classes,
            class: 0,
            shard: 0,
            after: None,
            consumed,
        };
        self.resume_dump(shards, d)
    }

    /// Runs (or continues, after the high-water mark stopped it) a
    /// metadump, then `END`.
    pub(super) fn resume_dump<S: Shards>(&mut self, shards: &mut S, mut d: PausedDump) -> Step {
        if shards.count() == 1 {
            let mut store = self.nth_shard(shards, 0);
            let classes = d.classes;
            if let Some(step) = self.dump_shard(&mut store, classes, &mut d) {
                return step;
            }
        } else if let Some(step) = self.dump_by_class(shards, &mut d) {
            return step;
        }
        self.output.extend_from_slice(b"END\r\n");
        Step::Done(d.consumed)
    }

    /// A metadump over several shards: each selected class in turn, and
    /// within it each shard, so the lines still come in class order.
    fn dump_by_class<S: Shards>(&mut self, shards: &mut S, d: &mut PausedDump) -> Option<Step> {
        while usize::from(d.class) < MAX_CLASSES {
            while d.classes.contains(d.class) && d.shard < shards.count() {
                let mut store = self.nth_shard(shards, d.shard);
                if store.classes[usize::from(d.class)].number > 0 {
                    let only = ClassSet::only(d.class);
                    if let Some(step) = self.dump_shard(&mut store, only, d) {
                        return Some(step);
                    }
                }
                d.shard += 1;
                d.after = None;
            }
            d.class += 1;
            d.shard = 0;
            d.after = None;
        }
        None
    }

    /// Lists one shard's items of `classes` from where `d` stopped: `None`
    /// once they are all listed, or the step that ends the request here
    /// (paused, or out of memory).
    fn dump_shard(
        &mut self,
        store: &mut Store,
        classes: ClassSet,
        d: &mut PausedDump,
    ) -> Option<Step> {
        let hwm = store.config().output_high_water;
        let mut batch = Vec::new();
        loop {
            if store
                .dump_batch(classes, d.after.as_ref(), BATCH, &mut batch)
                .is_err()
            {
                self.output
                    .extend_from_slice(b"SERVER_ERROR out of memory\r\n");
                return Some(Step::Done(d.consumed));
            }
            let &last = batch.last()?;
            for (i, &idx) in batch.iter().enumerate() {
                store.count_dump_checked(store.item(idx).class(), 1);
                if store.is_live(idx) {
                    self.metadump_line(store, idx);
                }
                if self.pending_len() >= hwm && (i + 1 < batch.len() || batch.len() == BATCH) {
                    d.after = Some(store.dump_pos(idx));
                    self.dump = Some(PausedDump {
                        after: d.after.take(),
                        ..*d
                    });
                    return Some(Step::Paused);
                }
            }
            if batch.len() < BATCH {
                return None;
            }
            d.after = Some(store.dump_pos(last));
        }
    }

    /// `key=<uri-encoded> exp=<abs|-1> la=<abs> cas=<n> fetch=<yes|no>
    /// cls=<n> size=<n>`, ended by a bare `\n` as memcached ends it.
    fn metadump_line(&mut self, store: &Store, idx: u32) {
        let it = store.item(idx);
        let out = &mut self.output;
        out.extend_from_slice(b"key=");
        uri_encode(it.key(), |b| out.extend_from_slice(b));
        out.extend_from_slice(b" exp=");
        match it.exptime() {
            0 => out.extend_from_slice(b"-1"),
            e => push_u64(out, store.unix_at(e)),
        }
        out.extend_from_slice(b" la=");
        push_u64(out, store.unix_at(it.time()));
        out.extend_from_slice(b" cas=");
        push_u64(out, it.cas());
        let fetched = it.has(crate::store::bits::FETCHED);
        out.extend_from_slice(if fetched { b" fetch=yes" } else { b" fetch=no" });
        out.extend_from_slice(b" cls=");
        push_u64(out, u64::from(it.class()));
        out.extend_from_slice(b" size=");
        push_u64(out, it.ntotal());
        out.push(b'\n');
    }

    /// `stats cachedump <class> <limit>` once dumps are known to be allowed
    /// and the arguments present: `ITEM <key> [<nbytes> b; <exptime> s]`
    /// lines for live items of the class, most recently used first (across
    /// shards by last access and CAS), then `END`.
    pub(super) fn cachedump<S: Shards>(&mut self, shards: &mut S, toks: &Tokens<'_>) {
        let args = (
            parse_u32_truncating(toks.get(2)),
            parse_u32_truncating(toks.get(3)),
        );
        let (Some(cls), Some(limit)) = args else {
            return self.out(b"CLIENT_ERROR bad command line format");
        };
        let Some(cls) = u8::try_from(cls)
            .ok()
            .filter(|&c| usize::from(c) < MAX_CLASSES)
        else {
            return self.out(b"CLIENT_ERROR Illegal slab id");
        };
        // Each shard's lines, most recently used first, with what orders
        // them across shards: last access, then CAS (the cache's one
        // sequence, so the later store of the same second comes first).
        let n = shards.count();
        let budget = if n == 1 {
            CACHEDUMP_MAX
        } else {
            2 * CACHEDUMP_MAX / n
        };
        let mut lines: Vec<(u32, u64, Vec<u8>)> = Vec::new();
        for i in 0..n {
            let store = self.nth_shard(shards, i);
            let mut taken = 0usize;
            store.walk_class(cls, limit, |it| {
                let mut line = Vec::new();
                cachedump_line(&store, it, &mut line);
                taken += line.len();
                if taken > budget || lines.try_reserve(1).is_err() {
                    return false;
                }
                lines.push((it.time(), it.cas(), line));
                true
            });
        }
        if n > 1 {
            lines.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        }
        let mut bytes = 0usize;
        for (shown, (_, _, line)) in lines.iter().enumerate() {
            if (limit != 0 && shown >= limit as usize) || bytes + line.len() + 6 > CACHEDUMP_MAX {
                break;
            }
            bytes += line.len();
            self.output.extend_from_slice(line);
        }
        self.output.extend_from_slice(b"END\r\n");
    }
}

/// One cachedump line. The key is cut at a NUL byte, as memcached copies it
/// as a C string.
fn cachedump_line(store: &Store, it: ItemRef<'_>, line: &mut Vec<u8>) {
    let key = it.key();
    let key = key.split(|&b| b == 0).next().unwrap_or(key);
    line.extend_from_slice(b"ITEM ");
    line.extend_from_slice(key);
    line.extend_from_slice(b" [");
    push_u64(line, it.value().len() as u64);
    line.extend_from_slice(b" b; ");
    match it.exptime() {
        0 => line.push(b'0'),
        e => push_u64(line, store.unix_at(e)),
    }
    line.extend_from_slice(b" s]\r\n");
}

/// memcached's `uriencode`: letters, digits and `-._~` as they are, every
/// other byte as `%XX` in upper-case hex.
fn uri_encode(key: &[u8], mut emit: impl FnMut(&[u8])) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            emit(&[b]);
        } else {
            emit(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(k: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        uri_encode(k, |b| v.extend_from_slice(b));
        v
    }

    #[test]
    fn uri_encoding_keeps_unreserved_bytes() {
        assert_eq!(enc(b"aZ9-._~"), b"aZ9-._~");
        assert_eq!(enc(b"b%20"), b"b%2520");
        assert_eq!(enc(b"/:\x7f\xc3"), b"%2F%3A%7F%C3");
    }
}
