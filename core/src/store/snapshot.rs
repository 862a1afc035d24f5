//! Warm restart: the whole store as a stream of bytes, and back.
//!
//! A host that stops gracefully asks [`Store::snapshot`] for a
//! [`Snapshot`], takes its bytes chunk by chunk with
//! [`Snapshot::next_chunk`] and writes them wherever it keeps them; the
//! next start feeds them, in any chunking, to a [`Restore`] and gets the
//! store back from [`Restore::finish`]. The core does no I/O: where the
//! bytes go, and how they are made durable, is the host's business.
//!
//! What comes back: every live item with its key, value, client flags, CAS
//! value, state bits (fetched, active, stale, win token sent, binary key),
//! last access time and expiry, in the same LRU order; the CAS counter and
//! the `flush_all` horizon. Items that expired (or that a delayed
//! `flush_all` hid) while the server was down are not restored: the
//! store's relative clock resumes where it stopped plus the wall-clock
//! time the server was down, so every TTL keeps counting by the wall clock.
//! Statistics start from zero, as after any start.
//!
//! # Format
//!
//! All integers little-endian.
//!
//! | part | bytes | contents |
//! |---|---|---|
//! | header | 8 | magic `WMCSNAP\0` |
//! | | 4 | format [`VERSION`] |
//! | | 4 | settings that change what an item may be: `-I` (`item_size_max`) |
//! | | 4 | setting bits: 1 = CAS disabled (`-C`) |
//! | | 8 | `-m` in bytes (informational: a smaller limit restores the most recently used items that fit) |
//! | | 8 | unix time at which the store's relative clock was 0 |
//! | | 4 | the relative clock (seconds) when the snapshot was taken |
//! | | 8 | last CAS value issued |
//! | | 4 | `flush_all` horizon, relative seconds (0: none) |
//! | | 8 | CAS value of the last immediate `flush_all` |
//! | | 8 | at most this many items follow (sizes the index up front) |
//! | item, most recently used first | 1 | tag 1 |
//! | | 8 | CAS value |
//! | | 1 | state bits |
//! | | 4 | last access, relative seconds |
//! | | 4 | expiry, relative seconds (0: never) |
//! | | 4 | client flags |
//! | | 1 | key length (1–250) |
//! | | 4 | value length |
//! | | key, value | |
//! | end | 1 | tag 0xff |
//! | | 8 | number of items |
//! | | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! Nothing may follow the checksum. A stream that is cut short, has a bad
//! checksum, another magic or version, or another `-I` or CAS setting, is
//! refused as a whole: the host starts cold.

use alloc::vec::Vec;
use core::fmt;
use core::hash::BuildHasher;

use super::item::{bits, ntotal, ItemRef, Shape, CAS_MAX, NIL};
use super::Store;
use crate::clock::Clock;
use crate::config::Config;

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

const MAGIC: [u8; 8] = *b"WMCSNAP\0";
const HEADER_LEN: usize = 8 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 4 + 8 + 8;
const TAG_ITEM: u8 = 1;
const TAG_END: u8 = 0xff;
/// Tag, CAS, bits, time, exptime, flags, key length, value length.
const ITEM_FIXED: usize = 1 + 8 + 1 + 4 + 4 + 4 + 1 + 4;
const END_LEN: usize = 1 + 8 + 4;
/// Setting bit: the store was created with CAS values disabled.
const SETTING_NO_CAS: u32 = 1;
/// Longest key (memcached's `KEY_MAX_LENGTH`).
const KEY_MAX: usize = 250;
/// Bytes [`Snapshot::next_chunk`] aims to append per call (a record is
/// never split, so a chunk holding a large value is larger).
const CHUNK: usize = 64 * 1024;
/// The relative clock must stay far from wrapping (memcached's clock is a
/// 32-bit count of seconds too).
const CLOCK_MAX: u64 = 1 << 31;

/// Why a snapshot was refused. Any of these means the host starts with an
/// empty store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The bytes do not start with a snapshot's magic.
    NotASnapshot,
    /// Written by a build with another format version.
    Version {
        /// The version in the snapshot.
        found: u32,
    },
    /// Written with another item size limit (`-I`).
    ItemSizeMax {
        /// The snapshot's limit.
        snapshot: u32,
        /// This store's limit.
        configured: u32,
    },
    /// Written with CAS values enabled where they are now disabled, or
    /// the other way round (`-C`).
    CasSetting,
    /// The stream ended before its checksum.
    Truncated,
    /// The checksum does not match the contents.
    Checksum,
    /// A record is malformed (what is wrong with it).
    Corrupt(&'static str),
    /// Bytes follow the checksum.
    TrailingData,
    /// The snapshot's clock cannot be continued (it is beyond the range a
    /// store's relative clock may take).
    Clock,
    /// The memory for buffering a record could not be allocated.
    OutOfMemory,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::NotASnapshot => f.write_str("not a wasmcached snapshot"),
            SnapshotError::Version { found } => {
                write!(f, "format version {found}, this build reads {VERSION}")
            }
            SnapshotError::ItemSizeMax {
                snapshot,
                configured,
            } => write!(
                f,
                "written with -I {snapshot}, this server runs with -I {configured}"
            ),
            SnapshotError::CasSetting => {
                f.write_str("written with another -C (CAS) setting than this server's")
            }
            SnapshotError::Truncated => f.write_str("truncated"),
            SnapshotError::Checksum => f.write_str("checksum mismatch"),
            SnapshotError::Corrupt(what) => write!(f, "corrupt: {what}"),
            SnapshotError::TrailingData => f.write_str("data after the checksum"),
            SnapshotError::Clock => f.write_str("its clock cannot be continued"),
            SnapshotError::OutOfMemory => f.write_str("out of memory while restoring"),
        }
    }
}

impl Store {
    /// Starts writing the whole store as a snapshot, as of `clock`.
    ///
    /// Call when the server has stopped serving: the returned [`Snapshot`]
    /// borrows the store, so nothing can change it until the last chunk is
    /// taken. Items that are expired or flushed at `clock` are left out.
    pub fn snapshot(&mut self, clock: Clock) -> Snapshot<'_> {
        Snapshot::of_shards(alloc::vec![self], clock)
    }
}

impl<'a> Snapshot<'a> {
    /// Starts writing a cache split into shards ([`crate::shards`]) as one
    /// snapshot, as of `clock`: the shards' items one shard after another,
    /// each shard's most recently used first. It restores into any number
    /// of shards ([`Restore::new_shards`]), or into one store.
    pub fn of_shards(shards: Vec<&'a mut Store>, clock: Clock) -> Snapshot<'a> {
        let stores = shards
            .into_iter()
            .map(|s| {
                s.advance(clock);
                &*s
            })
            .collect();
        Snapshot {
            stores,
            shard: 0,
            stage: Stage::Header,
            cursor: NIL,
            crc: crc32fast::Hasher::new(),
            items: 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Items,
    Done,
}

/// A store being written out; see the [module documentation](self).
///
/// Call [`Snapshot::next_chunk`] until it returns `false`; the bytes it
/// appended, in order, are the snapshot.
pub struct Snapshot<'a> {
    /// The shards (one for a plain store), written in order.
    stores: Vec<&'a Store>,
    /// The shard being written.
    shard: usize,
    stage: Stage,
    /// The next item of `stores[shard]` to write, walking its LRU from the
    /// head.
    cursor: u32,
    crc: crc32fast::Hasher,
    items: u64,
}

impl Snapshot<'_> {
    /// Appends the next part of the snapshot to `out` (about 64 KiB, whole
    /// records) and returns `true`, or returns `false`, appending nothing,
    /// once the whole snapshot has been produced. The caller owns `out`
    /// and may clear it between calls.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        match self.stage {
            Stage::Done => return false,
            Stage::Header => {
                self.header(out);
                self.cursor = self.stores.first().map_or(NIL, |s| s.lru.head);
                self.stage = Stage::Items;
            }
            Stage::Items => {}
        }
        while out.len() - start < CHUNK {
            let Some(&s) = self.stores.get(self.shard) else {
                break;
            };
            if self.cursor == NIL {
                self.shard += 1;
                self.cursor = self.stores.get(self.shard).map_or(NIL, |s| s.lru.head);
                continue;
            }
            let it = s.item(self.cursor);
            self.cursor = it.next();
            if s.is_expired(it) || s.is_flushed(it) {
                continue;
            }
            encode_item(it, out);
            self.items += 1;
        }
        if self.shard >= self.stores.len() {
            out.push(TAG_END);
            out.extend_from_slice(&self.items.to_le_bytes());
            self.crc.update(&out[start..]);
            let crc = self.crc.clone().finalize();
            out.extend_from_slice(&crc.to_le_bytes());
            self.stage = Stage::Done;
        } else {
            self.crc.update(&out[start..]);
        }
        true
    }

    /// Items written so far: all of them once [`Snapshot::next_chunk`]
    /// returned `false`.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The header: the first shard's settings, clock and flush horizon
    /// (every shard shares them), the whole cache's memory and item count,
    /// and the last CAS value issued.
    fn header(&self, out: &mut Vec<u8>) {
        let Some(&s) = self.stores.first() else {
            return;
        };
        let sum = |f: fn(&Store) -> u64| self.stores.iter().map(|s| f(s)).sum::<u64>();
        let last_cas = self.stores.iter().map(|s| s.last_cas()).max().unwrap_or(0);
        let oldest_cas = s.oldest_cas;
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&s.cfg.item_size_max.to_le_bytes());
        out.extend_from_slice(&settings(&s.cfg).to_le_bytes());
        out.extend_from_slice(&sum(|s| s.cfg.memory_limit).to_le_bytes());
        out.extend_from_slice(&s.process_started.to_le_bytes());
        out.extend_from_slice(&s.now.to_le_bytes());
        out.extend_from_slice(&last_cas.to_le_bytes());
        out.extend_from_slice(&s.oldest_live.to_le_bytes());
        out.extend_from_slice(&oldest_cas.to_le_bytes());
        out.extend_from_slice(&sum(|s| s.arena.len() as u64).to_le_bytes());
    }
}

/// The setting bits a snapshot records for `cfg`.
fn settings(cfg: &Config) -> u32 {
    if cfg.cas_enabled {
        0
    } else {
        SETTING_NO_CAS
    }
}

fn encode_item(it: ItemRef<'_>, out: &mut Vec<u8>) {
    let key = it.key();
    let value = it.value();
    out.push(TAG_ITEM);
    out.extend_from_slice(&it.cas().to_le_bytes());
    out.push(it.bits() & !bits::LAYOUT);
    out.extend_from_slice(&it.time().to_le_bytes());
    out.extend_from_slice(&it.exptime().to_le_bytes());
    out.extend_from_slice(&it.flags().to_le_bytes());
    // Keys are at most 250 bytes and values at most `-I` (under 4 GiB).
    out.push(key.len() as u8);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// What a successful [`Restore`] brought back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Items restored.
    pub items: u64,
    /// Items left out because they expired, or a delayed `flush_all` hid
    /// them, while the server was down.
    pub expired: u64,
    /// Items left out because the memory limit was reached (a smaller
    /// `-m` than the snapshot's): the least recently used ones.
    pub over_limit: u64,
    /// Seconds between the snapshot and the restore, by the wall clock.
    pub down_secs: u64,
}

/// A store being read back from a snapshot; see the [module
/// documentation](self).
///
/// Call order: [`Restore::new`] with the new configuration and the clock
/// now; [`Restore::receive`] with the snapshot's bytes, in order, in any
/// chunking; [`Restore::finish`]. The first error is final: the partly
/// restored store is dropped with the `Restore` and the host starts cold.
pub struct Restore {
    sink: Sink,
    clock: Clock,
    stage: Stage,
    /// Received bytes not yet parsed (at most one record, plus the chunk
    /// being parsed).
    pending: Vec<u8>,
    /// Parsed bytes at the front of `pending`.
    pos: usize,
    crc: crc32fast::Hasher,
    /// Item records parsed.
    items: u64,
}

/// Where restored items go: each to its key's shard (one for a plain
/// store).
struct Sink {
    stores: Vec<Store>,
    /// Per shard: its memory limit was reached, so later (less recently
    /// used) items for it are checked but not stored.
    full: Vec<bool>,
    report: Restored,
}

impl Restore {
    /// Prepares to restore a store with configuration `cfg` at `clock` (as
    /// [`Store::new`] would create it).
    pub fn new(cfg: Config, clock: Clock) -> Restore {
        Restore::new_shards(alloc::vec![cfg], clock)
    }

    /// Prepares to restore a cache split into shards, shard `i` created
    /// with `cfgs[i]` (see [`Config::for_shard`]): every item goes to its
    /// key's shard, whatever the number of shards that wrote the snapshot.
    /// Finish with [`Restore::finish_shards`], then give the shards their
    /// shared counter ([`Store::share_sequences`]).
    pub fn new_shards(cfgs: Vec<Config>, clock: Clock) -> Restore {
        let full = alloc::vec![false; cfgs.len()];
        Restore {
            sink: Sink {
                stores: cfgs.into_iter().map(|c| Store::new(c, clock)).collect(),
                full,
                report: Restored::default(),
            },
            clock,
            stage: Stage::Header,
            pending: Vec::new(),
            pos: 0,
            crc: crc32fast::Hasher::new(),
            items: 0,
        }
    }

    /// Takes the next bytes of the snapshot.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        if self.pos > 0 && self.pos >= self.pending.len() / 2 {
            self.pending.drain(..self.pos);
            self.pos = 0;
        }
        self.pending
            .try_reserve(bytes.len())
            .map_err(|_| SnapshotError::OutOfMemory)?;
        self.pending.extend_from_slice(bytes);
        while let Some(n) = self.step()? {
            self.pos += n;
        }
        Ok(())
    }

    /// Ends the restore: the store, and what was restored. Fails unless
    /// the whole snapshot, checksum included, was received.
    pub fn finish(self) -> Result<(Store, Restored), SnapshotError> {
        let (stores, report) = self.finish_shards()?;
        let store = stores.into_iter().next().ok_or(SnapshotError::Truncated)?;
        Ok((store, report))
    }

    /// [`Restore::finish`] for [`Restore::new_shards`]: the shards, in
    /// order, and what was restored.
    pub fn finish_shards(self) -> Result<(Vec<Store>, Restored), SnapshotError> {
        if self.stage != Stage::Done {
            return Err(SnapshotError::Truncated);
        }
        let Sink {
            mut stores, report, ..
        } = self.sink;
        for store in &mut stores {
            store.flush_pending = store.oldest_live > store.now;
        }
        Ok((stores, report))
    }

    /// Parses one part from the unparsed bytes: `Some(length)` when one was
    /// complete, `None` when more bytes are needed.
    fn step(&mut self) -> Result<Option<usize>, SnapshotError> {
        let buf = &self.pending[self.pos..];
        match self.stage {
            Stage::Header => {
                if buf.len() < MAGIC.len() {
                    return if MAGIC.starts_with(buf) {
                        Ok(None)
                    } else {
                        Err(SnapshotError::NotASnapshot)
                    };
                }
                if buf[..MAGIC.len()] != MAGIC {
                    return Err(SnapshotError::NotASnapshot);
                }
                if buf.len() < HEADER_LEN {
                    return Ok(None);
                }
                let header = &buf[..HEADER_LEN];
                self.crc.update(header);
                let h = Header::parse(header);
                self.apply(&h)?;
                self.stage = Stage::Items;
                Ok(Some(HEADER_LEN))
            }
            Stage::Items => match buf.first() {
                None => Ok(None),
                Some(&TAG_ITEM) => {
                    if buf.len() < ITEM_FIXED {
                        return Ok(None);
                    }
                    let mut r = Reader(&buf[1..ITEM_FIXED]);
                    let rec = ItemHead {
                        cas: r.u64(),
                        bits: r.u8(),
                        time: r.u32(),
                        exptime: r.u32(),
                        flags: r.u32(),
                        klen: usize::from(r.u8()),
                        vlen: r.u32() as usize,
                    };
                    rec.check(self.sink.config())?;
                    let len = ITEM_FIXED + rec.klen + rec.vlen;
                    if buf.len() < len {
                        // Room for the rest now, so that waiting for it
                        // cannot fail to allocate later.
                        self.pending
                            .try_reserve(len - buf.len())
                            .map_err(|_| SnapshotError::OutOfMemory)?;
                        return Ok(None);
                    }
                    let record = &self.pending[self.pos..self.pos + len];
                    self.crc.update(record);
                    let key = &record[ITEM_FIXED..ITEM_FIXED + rec.klen];
                    let value = &record[ITEM_FIXED + rec.klen..];
                    self.items += 1;
                    self.sink.add(&rec, key, value)?;
                    Ok(Some(len))
                }
                Some(&TAG_END) => {
                    if buf.len() < END_LEN {
                        return Ok(None);
                    }
                    self.crc.update(&buf[..END_LEN - 4]);
                    let mut r = Reader(&buf[1..END_LEN]);
                    let count = r.u64();
                    let crc = r.u32();
                    if self.crc.clone().finalize() != crc {
                        return Err(SnapshotError::Checksum);
                    }
                    if count != self.items {
                        return Err(SnapshotError::Corrupt("item count"));
                    }
                    self.stage = Stage::Done;
                    Ok(Some(END_LEN))
                }
                Some(_) => Err(SnapshotError::Corrupt("unknown record")),
            },
            Stage::Done => {
                if buf.is_empty() {
                    Ok(None)
                } else {
                    Err(SnapshotError::TrailingData)
                }
            }
        }
    }

    /// Checks the header against the configuration and continues the
    /// snapshot's clock: the relative clock resumes at the snapshot's
    /// value plus the wall-clock seconds since, so items' access times,
    /// expiry times and the flush horizon keep their meaning unchanged.
    fn apply(&mut self, h: &Header) -> Result<(), SnapshotError> {
        if h.version != VERSION {
            return Err(SnapshotError::Version { found: h.version });
        }
        let cfg = self.sink.config();
        if h.item_size_max != cfg.item_size_max {
            return Err(SnapshotError::ItemSizeMax {
                snapshot: h.item_size_max,
                configured: cfg.item_size_max,
            });
        }
        if h.settings & !SETTING_NO_CAS != 0 {
            return Err(SnapshotError::Corrupt("unknown setting"));
        }
        if h.settings != settings(cfg) {
            return Err(SnapshotError::CasSetting);
        }
        if h.last_cas > CAS_MAX || h.oldest_cas > CAS_MAX {
            return Err(SnapshotError::Corrupt("CAS counter"));
        }
        let taken = h
            .process_started
            .checked_add(u64::from(h.now))
            .ok_or(SnapshotError::Clock)?;
        let unix = self.clock.unix_secs;
        // A wall clock that went backwards: time stands still instead.
        let down = unix.saturating_sub(taken);
        let now = u64::from(h.now) + down;
        if now >= CLOCK_MAX {
            return Err(SnapshotError::Clock);
        }
        self.sink.report.down_secs = down;
        for s in &mut self.sink.stores {
            s.clock_base = now as u32;
            s.now = now as u32;
            s.process_started = unix.saturating_sub(now);
            s.sweep_pass_start = s.now;
            s.last_cas = h.last_cas;
            s.oldest_live = h.oldest_live;
            s.oldest_cas = h.oldest_cas;
            // Sizing the index once saves rehashing it as it grows (a third
            // of the restore time for a million items). The snapshot's count
            // is only trusted as far as the memory limit could hold items.
            let fit = s.item_limit() / ntotal(1, 0, 0);
            let hint = h.items_at_most.min(fit) as usize;
            let (table, hasher, arena) = (&mut s.table, &s.hasher, &s.arena);
            table
                .try_reserve(hint, |&i| hasher.hash_one(ItemRef::new(arena.get(i)).key()))
                .map_err(|_| SnapshotError::OutOfMemory)?;
        }
        Ok(())
    }
}

impl Sink {
    /// The settings items are checked against (every shard's but memory).
    fn config(&self) -> &Config {
        // A sink has at least one store: `Restore::new` makes one and a
        // host asks for at least one shard.
        &self.stores[0].cfg
    }

    /// Links a restored item at its shard's LRU tail (items arrive most
    /// recently used first), unless it expired while the server was down
    /// or the shard's memory limit was reached.
    fn add(&mut self, rec: &ItemHead, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        let i = crate::shards::shard_of(key, self.stores.len());
        let (s, full) = (&mut self.stores[i], &mut self.full[i]);
        let h = s.hasher.hash_one(key);
        let arena = &s.arena;
        if s.table
            .find(h, |&i| ItemRef::new(arena.get(i)).key() == key)
            .is_some()
        {
            return Err(SnapshotError::Corrupt("duplicate key"));
        }
        let expired = rec.exptime != 0 && rec.exptime <= s.now;
        let flushed = s.oldest_live != 0
            && s.oldest_live <= s.now
            && (rec.time <= s.oldest_live
                || (s.oldest_cas != 0 && rec.cas != 0 && rec.cas < s.oldest_cas));
        if expired || flushed {
            self.report.expired += 1;
            return Ok(());
        }
        let nt = ntotal(key.len(), rec.flags, value.len());
        if *full || s.bytes + nt > s.item_limit() || !s.arena.can_link() {
            *full = true;
            self.report.over_limit += 1;
            return Ok(());
        }
        let shape = Shape {
            klen: key.len(),
            vlen: value.len(),
            flags: rec.flags,
            exptime: rec.exptime,
        };
        let Some(idx) = s.arena.alloc(shape.size(), value.len()) else {
            // A large value the process cannot hold: as full as it gets.
            *full = true;
            self.report.over_limit += 1;
            return Ok(());
        };
        shape.write(s.arena.get_mut(idx), key, &[value], rec.bits);
        let mut m = s.item_mut(idx);
        m.set_cas(rec.cas);
        m.set_time(rec.time);
        let hasher = &s.hasher;
        let arena = &s.arena;
        s.table.insert_unique(h, idx, |&i| {
            hasher.hash_one(ItemRef::new(arena.get(i)).key())
        });
        s.lru.push_tail(&mut s.arena, idx);
        s.bytes += nt;
        if rec.exptime != 0 {
            s.ttl_items += 1;
        }
        let c = &mut s.classes[usize::from(crate::slab::class_of(nt))];
        c.number += 1;
        c.mem_requested += nt;
        self.report.items += 1;
        Ok(())
    }
}

/// The header's fields, in the order they are written.
struct Header {
    version: u32,
    item_size_max: u32,
    settings: u32,
    process_started: u64,
    now: u32,
    last_cas: u64,
    oldest_live: u32,
    oldest_cas: u64,
    items_at_most: u64,
}

impl Header {
    /// Reads a header (`HEADER_LEN` bytes, magic checked by the caller).
    fn parse(b: &[u8]) -> Header {
        let mut r = Reader(&b[MAGIC.len()..]);
        let version = r.u32();
        let item_size_max = r.u32();
        let settings = r.u32();
        let _memory_limit = r.u64();
        Header {
            version,
            item_size_max,
            settings,
            process_started: r.u64(),
            now: r.u32(),
            last_cas: r.u64(),
            oldest_live: r.u32(),
            oldest_cas: r.u64(),
            items_at_most: r.u64(),
        }
    }
}

/// The fixed part of an item record.
struct ItemHead {
    cas: u64,
    bits: u8,
    time: u32,
    exptime: u32,
    flags: u32,
    klen: usize,
    vlen: usize,
}

impl ItemHead {
    /// Refuses a record no store could have written, before its key and
    /// value are buffered (the value length decides how much memory that
    /// takes).
    fn check(&self, cfg: &Config) -> Result<(), SnapshotError> {
        if self.klen == 0 || self.klen > KEY_MAX {
            return Err(SnapshotError::Corrupt("key length"));
        }
        if !super::size_ok(cfg, self.klen, self.flags, self.vlen) {
            return Err(SnapshotError::Corrupt("item larger than -I"));
        }
        if self.cas > CAS_MAX {
            return Err(SnapshotError::Corrupt("CAS value"));
        }
        if self.bits & (bits::LAYOUT | 0x80) != 0 {
            return Err(SnapshotError::Corrupt("state bits"));
        }
        Ok(())
    }
}

/// Reads little-endian integers from a slice the caller sized.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(&self.0[..N]);
        self.0 = &self.0[N..];
        b
    }

    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}
