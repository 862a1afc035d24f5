//! Binary server commands: flush and stat (version, noop and quit are
//! answered where they are dispatched).

use alloc::vec::Vec;

use crate::conn::stats_cmd;
use crate::conn::Connection;
use crate::shards::Shards;

use super::{be_u32, op, Request, Status, HEADER_LEN, RESPONSE_MAGIC};

impl Connection {
    /// flush and flushq, with an optional delay in the extras (memcached's
    /// `process_bin_flush`). With `-F` memcached answers an auth error, and
    /// unlike the text protocol does not count the attempt.
    pub(super) fn bin_flush<S: Shards>(&mut self, shards: &mut S, req: &Request<'_>) {
        if !shards.config().flush_enabled {
            return self.bin_error(req, Status::AuthError);
        }
        let delay = if req.extras.len() == 4 {
            be_u32(req.extras)
        } else {
            0
        };
        self.flush_all(shards, i64::from(delay));
        self.home_shard(shards).stats.cmd_flush += 1;
        if !req.quiet {
            self.bin_reply(req, 0, b"");
        }
    }

    /// stat (memcached's `process_bin_stat`): one packet per statistic,
    /// then an empty packet. The key names the group: none for the general
    /// statistics; `reset`, `settings` and `detail` are matched as
    /// prefixes, as memcached does, other groups exactly; `detail on`,
    /// `off` and `dump` work as their text forms. Unknown groups
    /// (including the text-only `conns` and `extstore`) are not found.
    pub(super) fn bin_stat<S: Shards>(&mut self, shards: &mut S, req: &Request<'_>) {
        let group = req.key;
        let mut lines = Vec::with_capacity(4096);
        if group.is_empty() {
            let t = self.totals(shards);
            stats_cmd::general(&self.home_shard(shards), &t, &mut lines);
        } else if group.starts_with(b"reset") {
            self.reset_all(shards);
        } else if group.starts_with(b"settings") {
            let t = self.totals(shards);
            stats_cmd::settings(&self.home_shard(shards), &t, &mut lines);
        } else if let Some(sub) = group.strip_prefix(b"detail") {
            // As memcached: the words after `detail ` are matched as
            // prefixes (`dumpx` dumps), and the dump is the text one in a
            // single `detailed` packet. memcached compares past the end of
            // a shorter key (`detail`, `detail o`) with whatever its read
            // buffer held; here those are not found.
            if sub.starts_with(b" dump") {
                let dump = self.detail_dump(shards);
                self.stat_packet(req, b"detailed", &dump);
            } else if sub.starts_with(b" on") {
                self.set_detail(shards, true);
            } else if sub.starts_with(b" off") {
                self.set_detail(shards, false);
            } else {
                return self.bin_error(req, Status::KeyNotFound);
            }
        } else {
            match group {
                b"items" => stats_cmd::items(&self.totals(shards), &mut lines),
                b"slabs" => stats_cmd::slabs(&self.totals(shards), &mut lines),
                b"sizes" => lines.extend_from_slice(b"STAT sizes_status disabled\r\n"),
                _ => return self.bin_error(req, Status::KeyNotFound),
            }
        }
        for line in lines.split(|&b| b == b'\n') {
            let Some(stat) = line.strip_prefix(b"STAT ") else {
                continue;
            };
            let stat = stat.strip_suffix(b"\r").unwrap_or(stat);
            let sp = stat.iter().position(|&b| b == b' ').unwrap_or(stat.len());
            let value = stat.get(sp + 1..).unwrap_or(&[]);
            self.stat_packet(req, &stat[..sp], value);
        }
        self.stat_packet(req, b"", b"");
    }

    /// One statistic as memcached's `append_bin_stats` frames it: always
    /// the stat opcode, status 0 and CAS 0; the empty packet ends a group.
    fn stat_packet(&mut self, req: &Request<'_>, name: &[u8], value: &[u8]) {
        let mut hd = [0u8; HEADER_LEN];
        hd[0] = RESPONSE_MAGIC;
        hd[1] = op::STAT;
        hd[2..4].copy_from_slice(&(name.len() as u16).to_be_bytes());
        hd[8..12].copy_from_slice(&((name.len() + value.len()) as u32).to_be_bytes());
        hd[12..16].copy_from_slice(&req.h.opaque);
        self.output.extend_from_slice(&hd);
        self.output.extend_from_slice(name);
        self.output.extend_from_slice(value);
    }
}
