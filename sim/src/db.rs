//! The "database" behind the cache: a host answering `GET <key>\n` with
//! the key's current row after a simulated delay, and `PUT <key>\n` by
//! moving the row to its next version. It keeps what the scenarios report
//! and the checks need: every query and update, with its sim time.
//!
//! A row is `row-of-<key>#v<version>.<n>` for the n-th query of the key:
//! the same row to the application while the version stays, a distinct
//! value to the checkers (every value written to the cache names its
//! write).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use turmoil::net::{TcpListener, TcpStream};

use crate::client::Failed;
use crate::trace::now;

/// Port the database listens on.
pub const PORT: u16 = 5432;
/// How long a query takes by default.
pub const QUERY_TIME: Duration = Duration::from_millis(50);

/// What the database did during a run.
#[derive(Default, Debug)]
pub struct Log {
    /// Queries per key.
    pub queries: BTreeMap<String, u64>,
    /// Every query's sim time.
    pub query_times: Vec<Duration>,
    /// Each key's current version (0 until its first update).
    pub versions: BTreeMap<String, u64>,
    /// Every update: key, new version, sim time it was acknowledged.
    pub updates: Vec<(String, u64, Duration)>,
}

impl Log {
    /// Queries, all keys.
    pub fn total(&self) -> u64 {
        self.queries.values().sum()
    }

    /// Queries answered in `from..to`.
    pub fn queries_between(&self, from: Duration, to: Duration) -> u64 {
        self.query_times
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count() as u64
    }

    /// The latest version of `key` whose update was acknowledged before
    /// `at` (0: the original row).
    pub fn version_before(&self, key: &str, at: Duration) -> u64 {
        self.updates
            .iter()
            .filter(|(k, _, t)| k == key && *t < at)
            .map(|(_, v, _)| *v)
            .max()
            .unwrap_or(0)
    }
}

/// The database's log, shared with the scenario.
pub type Shared = Rc<RefCell<Log>>;

/// The row of `key` at `version`, as the `n`-th answer (or any other tag).
pub fn row(key: &str, version: u64, tag: impl std::fmt::Display) -> Vec<u8> {
    format!("row-of-{key}#v{version}.{tag}").into_bytes()
}

/// Whether `v` is a row of `key` (whichever answer it came from).
pub fn is_row_of(key: &str, v: &[u8]) -> bool {
    let prefix = format!("row-of-{key}#");
    v.starts_with(prefix.as_bytes())
}

/// The version of a row (`None`: not a row).
pub fn version_of(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?;
    let (_, rest) = s.rsplit_once("#v")?;
    rest.split('.').next()?.parse().ok()
}

/// Serves queries until the simulation ends; each takes `query_time`.
pub async fn serve(log: Shared, query_time: Duration) -> turmoil::Result {
    let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (sock, _) = listener.accept().await?;
        let log = log.clone();
        tokio::task::spawn_local(async move {
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tokio::time::sleep(query_time).await;
                let reply = match line.split_once(' ') {
                    Some(("PUT", key)) => {
                        let mut l = log.borrow_mut();
                        let v = l.versions.entry(key.to_string()).or_default();
                        *v += 1;
                        let v = *v;
                        l.updates.push((key.to_string(), v, now()));
                        format!("OK v{v}").into_bytes()
                    }
                    Some((_, key)) => {
                        let mut l = log.borrow_mut();
                        let n = {
                            let n = l.queries.entry(key.to_string()).or_default();
                            *n += 1;
                            *n
                        };
                        l.query_times.push(now());
                        let v = l.versions.get(key).copied().unwrap_or(0);
                        row(key, v, n)
                    }
                    None => b"ERROR".to_vec(),
                };
                let mut reply = reply;
                reply.push(b'\n');
                if w.write_all(&reply).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// A connection to the database.
pub struct DbClient {
    lines: tokio::io::Lines<BufReader<turmoil::net::tcp::OwnedReadHalf>>,
    w: turmoil::net::tcp::OwnedWriteHalf,
}

impl DbClient {
    /// Connects to the host `db`.
    pub async fn connect() -> Result<DbClient, Failed> {
        let s = TcpStream::connect(("db", PORT)).await.map_err(|_| Failed)?;
        let (r, w) = s.into_split();
        Ok(DbClient {
            lines: BufReader::new(r).lines(),
            w,
        })
    }

    async fn ask(&mut self, line: String) -> Result<Vec<u8>, Failed> {
        self.w
            .write_all(line.as_bytes())
            .await
            .map_err(|_| Failed)?;
        match self.lines.next_line().await {
            Ok(Some(l)) => Ok(l.into_bytes()),
            _ => Err(Failed),
        }
    }

    /// The key's current row.
    pub async fn query(&mut self, key: &str) -> Result<Vec<u8>, Failed> {
        self.ask(format!("GET {key}\n")).await
    }

    /// Moves the key's row to its next version.
    pub async fn update(&mut self, key: &str) -> Result<(), Failed> {
        self.ask(format!("PUT {key}\n")).await.map(|_| ())
    }
}
