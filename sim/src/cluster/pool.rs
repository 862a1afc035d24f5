//! A client of a cluster of servers, placing each key on one server and
//! reacting to failures the way real clients do.
//!
//! * [`Failover::Pymemcache`]: pymemcache 4.0's `HashClient` with
//!   `ignore_exc=True`. A server whose request fails (connection error or
//!   timeout: Python's `OSError`) enters retry mode: its keys get the
//!   default answer (a miss, a failed store) without a request until
//!   `retry_timeout` has passed, then one request is tried; after
//!   `retry_attempts` failed tries the server is removed from the ring
//!   (its keys move to the others; the request that decides it is still
//!   sent to it, as pymemcache does) and comes back into the ring
//!   `dead_timeout` after that, checked at most once per `dead_timeout`.
//! * [`Failover::AutoEject`]: libmemcached's and twemproxy's
//!   `auto_eject_hosts`: `failure_limit` consecutive failures eject a
//!   server from the continuum for `retry_timeout`, after which it is
//!   live again (and ejected again if it still fails).
//!
//! Placement is [`Rendezvous`] or [`Ketama`] over the live servers' names
//! (`"<host>:11211"`), rebuilt whenever the live set changes.

use std::time::Duration;

use super::hashing::{Ketama, Placement, Rendezvous};
use crate::client::{Client, Failed, Request};
use crate::host::PORT;
use crate::trace::{now, Outcome};

/// How keys are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hashing {
    /// pymemcache's rendezvous hashing (murmur3).
    Rendezvous,
    /// libmemcached's and twemproxy's md5 ketama continuum.
    Ketama,
}

impl Hashing {
    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Hashing::Rendezvous => "rendezvous",
            Hashing::Ketama => "ketama",
        }
    }

    /// The placement over `names`.
    pub fn build(self, names: Vec<String>) -> Box<dyn Placement> {
        match self {
            Hashing::Rendezvous => Box::new(Rendezvous::new(names)),
            Hashing::Ketama => Box::new(Ketama::new(&names)),
        }
    }
}

/// How a client reacts to a failing server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failover {
    /// pymemcache `HashClient` (its defaults: 2 attempts, 1 s, 60 s).
    Pymemcache {
        /// Failed tries before the server is removed.
        retry_attempts: u32,
        /// Time between tries.
        retry_timeout: Duration,
        /// Time before a removed server is tried again.
        dead_timeout: Duration,
    },
    /// libmemcached / twemproxy `auto_eject_hosts`.
    AutoEject {
        /// Consecutive failures that eject a server.
        failure_limit: u32,
        /// How long it stays ejected.
        retry_timeout: Duration,
    },
}

/// One server's failure bookkeeping.
#[derive(Clone, Copy, Debug, Default)]
struct Health {
    /// pymemcache: in retry mode since (last failure), with attempts.
    failed: Option<(Duration, u32)>,
    /// pymemcache: removed from the ring at.
    dead: Option<Duration>,
    /// auto-eject: consecutive failures.
    failures: u32,
    /// auto-eject: ejected until.
    ejected_until: Option<Duration>,
}

/// What became of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The server's reply, and which server it was.
    Reply(Outcome, usize),
    /// No server was asked (retry mode, or every server is out): the
    /// client library's default answer.
    Skipped,
    /// The server was asked and failed: its request may or may not have
    /// taken effect.
    Failed(usize),
}

/// A cluster client: one connection per server, the placement, failover.
pub struct Pool {
    hosts: Vec<&'static str>,
    names: Vec<String>,
    clients: Vec<Client>,
    hashing: Hashing,
    failover: Failover,
    health: Vec<Health>,
    /// Indices of the servers in the ring, and the ring over them.
    live: Vec<usize>,
    ring: Box<dyn Placement>,
    last_dead_check: Duration,
    /// Times a server left or rejoined the ring.
    pub ring_changes: u64,
}

impl Pool {
    /// A pool over `clients` (one per server host, in order).
    pub fn new(clients: Vec<Client>, hashing: Hashing, failover: Failover) -> Pool {
        let hosts: Vec<&'static str> = clients.iter().map(Client::server).collect();
        let names: Vec<String> = hosts.iter().map(|h| format!("{h}:{PORT}")).collect();
        let live: Vec<usize> = (0..hosts.len()).collect();
        let ring = hashing.build(names.clone());
        Pool {
            health: vec![Health::default(); hosts.len()],
            hosts,
            names,
            clients,
            hashing,
            failover,
            live,
            ring,
            last_dead_check: now(),
            ring_changes: 0,
        }
    }

    /// The server hosts, in order.
    pub fn hosts(&self) -> &[&'static str] {
        &self.hosts
    }

    fn rebuild(&mut self) {
        let now = now();
        self.live = (0..self.hosts.len())
            .filter(|&i| {
                let h = &self.health[i];
                h.dead.is_none() && h.ejected_until.is_none_or(|t| t <= now)
            })
            .collect();
        let names = self.live.iter().map(|&i| self.names[i].clone()).collect();
        self.ring = self.hashing.build(names);
        self.ring_changes += 1;
    }

    /// The server `key` goes to now (after bringing back servers whose
    /// time out of the ring is over).
    pub fn server_for(&mut self, key: &str) -> Option<usize> {
        let now = now();
        match self.failover {
            Failover::Pymemcache { dead_timeout, .. } => {
                if self.health.iter().any(|h| h.dead.is_some())
                    && now.saturating_sub(self.last_dead_check) > dead_timeout
                {
                    let mut back = false;
                    for h in &mut self.health {
                        if h.dead.is_some_and(|d| now.saturating_sub(d) > dead_timeout) {
                            h.dead = None;
                            back = true;
                        }
                    }
                    self.last_dead_check = now;
                    if back {
                        self.rebuild();
                    }
                }
            }
            Failover::AutoEject { .. } => {
                let mut back = false;
                for h in &mut self.health {
                    if h.ejected_until.is_some_and(|t| t <= now) {
                        h.ejected_until = None;
                        back = true;
                    }
                }
                if back {
                    self.rebuild();
                }
            }
        }
        self.ring.node(key).map(|i| self.live[i])
    }

    /// Runs `req` on the server its key goes to, with the failover rules.
    pub async fn run(&mut self, req: Request) -> Answer {
        let Some(s) = self.server_for(&req.key) else {
            return Answer::Skipped;
        };
        let now = now();
        if let Failover::Pymemcache {
            retry_attempts,
            retry_timeout,
            ..
        } = self.failover
        {
            if let Some((at, attempts)) = self.health[s].failed {
                if attempts < retry_attempts {
                    if now.saturating_sub(at) <= retry_timeout {
                        return Answer::Skipped;
                    }
                    let got = self.clients[s].call(req).await;
                    return self.settle(s, got);
                }
                // Out of attempts: out of the ring, and this request still
                // goes to it.
                self.health[s].failed = None;
                self.health[s].dead = Some(now);
                self.rebuild();
            }
        }
        let got = self.clients[s].call(req).await;
        self.settle(s, got)
    }

    /// Books the result of a request to server `s`.
    fn settle(&mut self, s: usize, got: Result<Outcome, Failed>) -> Answer {
        let now = now();
        match got {
            Ok(o) => {
                let h = &mut self.health[s];
                h.failed = None;
                h.failures = 0;
                Answer::Reply(o, s)
            }
            Err(Failed) => {
                match self.failover {
                    Failover::Pymemcache { retry_attempts, .. } => {
                        let h = &mut self.health[s];
                        h.failed = Some(match h.failed {
                            Some((_, n)) => (now, n + 1),
                            None => (now, 0),
                        });
                        if retry_attempts == 0 && h.dead.is_none() {
                            h.dead = Some(now);
                            self.rebuild();
                        }
                    }
                    Failover::AutoEject {
                        failure_limit,
                        retry_timeout,
                    } => {
                        let h = &mut self.health[s];
                        h.failures += 1;
                        if h.failures >= failure_limit {
                            h.failures = 0;
                            h.ejected_until = Some(now + retry_timeout);
                            self.rebuild();
                        }
                    }
                }
                Answer::Failed(s)
            }
        }
    }
}

/// The fraction of `keys` that `hashing` moves to another server when
/// server `lost` (an index into `hosts`) leaves the ring.
pub fn remapped(hashing: Hashing, hosts: &[&str], lost: usize, keys: &[String]) -> f64 {
    let names: Vec<String> = hosts.iter().map(|h| format!("{h}:{PORT}")).collect();
    let all = hashing.build(names.clone());
    let rest: Vec<usize> = (0..hosts.len()).filter(|&i| i != lost).collect();
    let fewer = hashing.build(rest.iter().map(|&i| names[i].clone()).collect());
    let moved = keys
        .iter()
        .filter(|k| all.node(k) != fewer.node(k).map(|i| rest[i]))
        .count();
    moved as f64 / keys.len().max(1) as f64
}
