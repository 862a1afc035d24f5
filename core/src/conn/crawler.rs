//! The `lru_crawler` command family (memcached 1.6.18's
//! `process_lru_crawler_command`): `crawl`, `metadump`, `sleep`,
//! `tocrawl`, `enable` and `disable`.

use crate::num::parse_u32_truncating;
use crate::shards::Shards;
use crate::slab::MAX_CLASSES;
use crate::store::{ClassSet, CrawlerSettings};

use super::tokens::Tokens;
use super::{Connection, Step};

/// memcached's crawl argument: a class list, `all`, or `hash` (a walk of
/// the hash table, which only metadumps can do).
enum Selection {
    Classes(ClassSet),
    Hash,
    /// An id that is not a number from 1 to 63.
    BadClass,
}

/// Parses `all`, `hash` or comma-separated class ids (empty items are
/// skipped, as `strtok` skips them).
fn selection(arg: &[u8]) -> Selection {
    match arg {
        b"all" => return Selection::Classes(ClassSet::ALL),
        b"hash" => return Selection::Hash,
        _ => {}
    }
    let mut set = ClassSet::default();
    for id in arg.split(|&b| b == b',').filter(|p| !p.is_empty()) {
        match parse_u32_truncating(id) {
            Some(n) if n >= 1 && (n as usize) < MAX_CLASSES => set.insert(n as u8),
            _ => return Selection::BadClass,
        }
    }
    Selection::Classes(set)
}

impl Connection {
    /// Dispatches `lru_crawler …`; `consumed` is the line's length. The
    /// crawler's settings are every shard's.
    pub(super) fn lru_crawler_command<S: Shards>(
        &mut self,
        shards: &mut S,
        toks: &Tokens<'_>,
        consumed: usize,
    ) -> Step {
        let done = Step::Done(consumed);
        let settings = self.home_shard(shards).crawler();
        match (toks.ntokens(), toks.get(1)) {
            (4, b"crawl") => self.crawl(shards, settings.enabled, toks.get(2)),
            (4, b"metadump") => {
                return self.metadump(shards, settings.enabled, toks.get(2), consumed)
            }
            (4, b"sleep") => match parse_u32_truncating(toks.get(2)) {
                None => self.out(b"CLIENT_ERROR bad command line format"),
                Some(us) if us > 1_000_000 => {
                    self.out(b"CLIENT_ERROR sleep must be one second or less")
                }
                Some(us) => self.set_crawler(shards, |c| c.sleep_us = us),
            },
            (4, b"tocrawl") => match parse_u32_truncating(toks.get(2)) {
                None => self.out(b"CLIENT_ERROR bad command line format"),
                Some(n) => self.set_crawler(shards, |c| c.tocrawl = n),
            },
            (3, b"enable") if settings.enabled => {
                self.out(b"ERROR failed to start lru crawler thread")
            }
            (3, b"enable") | (3, b"disable") => {
                let on = toks.get(1) == b"enable";
                self.set_crawler(shards, |c| c.enabled = on);
            }
            _ => self.out(b"ERROR"),
        }
        done
    }

    /// Changes every shard's crawler settings alike; replies `OK`.
    fn set_crawler<S: Shards>(&mut self, shards: &mut S, f: impl Fn(&mut CrawlerSettings)) {
        for i in 0..shards.count() {
            f(self.nth_shard(shards, i).crawler_mut());
        }
        self.out(b"OK");
    }

    /// `lru_crawler crawl <ids|all>`: reclaims expired items of the
    /// classes now, in every shard (memcached starts a background crawl
    /// and answers `OK`).
    fn crawl<S: Shards>(&mut self, shards: &mut S, enabled: bool, arg: &[u8]) {
        if !enabled {
            return self.out(b"CLIENT_ERROR lru crawler disabled");
        }
        match selection(arg) {
            Selection::Hash => self.out(b"ERROR an unknown error happened"),
            Selection::BadClass => self.out(b"BADCLASS invalid class id"),
            Selection::Classes(set) if set.is_empty() => self.out(b"NOTSTARTED no items to crawl"),
            Selection::Classes(set) => {
                for i in 0..shards.count() {
                    let _ = self.nth_shard(shards, i).crawl(set);
                }
                self.out(b"OK");
            }
        }
    }

    /// `lru_crawler metadump <ids|all|hash>`: no `OK`, the dump itself.
    /// Like memcached, it is refused while replies to earlier requests
    /// are still waiting to be sent.
    fn metadump<S: Shards>(
        &mut self,
        shards: &mut S,
        enabled: bool,
        arg: &[u8],
        consumed: usize,
    ) -> Step {
        let done = Step::Done(consumed);
        if !enabled {
            self.out(b"CLIENT_ERROR lru crawler disabled");
            return done;
        }
        if !shards.config().dump_enabled {
            self.out(b"ERROR metadump not allowed");
            return done;
        }
        if self.pending_len() > 0 {
            self.out(b"ERROR cannot pipeline other commands before metadump");
            return done;
        }
        match selection(arg) {
            Selection::Hash => self.start_metadump(shards, ClassSet::ALL, consumed),
            Selection::Classes(set) if set.is_empty() => {
                self.out(b"NOTSTARTED no items to crawl");
                done
            }
            Selection::Classes(set) => self.start_metadump(shards, set, consumed),
            Selection::BadClass => {
                self.out(b"BADCLASS invalid class id");
                done
            }
        }
    }
}
