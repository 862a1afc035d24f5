//! A small memcached client (text + meta) for simulated clients: seeded
//! random chunking of every request (turmoil keeps write boundaries, so
//! the client makes split and coalesced writes itself), timeouts,
//! reconnects, and a history record for every operation.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpStream;

use crate::host::PORT;
use crate::rng::Rng;
use crate::trace::{now, Op, Outcome, Shared};

/// A meta reply: code, returned flags, value.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// `VA`, `HD`, `EN`, `NS`, `EX`, `NF`.
    pub code: String,
    /// Returned flags, e.g. `c5`, `W`.
    pub flags: Vec<String>,
    /// The value, for `VA`.
    pub value: Vec<u8>,
}

impl Meta {
    /// Whether flag `f` (a single letter) was returned.
    pub fn has(&self, f: char) -> bool {
        self.flags.iter().any(|x| x.starts_with(f) && x.len() == 1)
    }
    /// The numeric argument of flag `f`.
    pub fn num(&self, f: char) -> Option<u64> {
        self.flags
            .iter()
            .find(|x| x.starts_with(f) && x.len() > 1)
            .and_then(|x| x[1..].parse().ok())
    }
}

/// The connection failed or timed out; the operation is indeterminate.
#[derive(Debug)]
pub struct Failed;

/// A client of one server.
pub struct Client {
    name: String,
    server: &'static str,
    sock: Option<TcpStream>,
    buf: Vec<u8>,
    rng: Rng,
    rec: Shared,
    timeout: Duration,
}

impl Client {
    /// A client named `name` for server `server`, with its own RNG stream.
    pub fn new(
        name: String,
        server: &'static str,
        rng: Rng,
        rec: Shared,
        timeout: Duration,
    ) -> Client {
        Client {
            name,
            server,
            sock: None,
            buf: Vec::new(),
            rng,
            rec,
            timeout,
        }
    }

    /// The client's RNG (workload decisions use it too).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    async fn connected(&mut self) -> Result<&mut TcpStream, Failed> {
        if self.sock.is_none() {
            let s = TcpStream::connect((self.server, PORT))
                .await
                .map_err(|_| Failed)?;
            self.sock = Some(s);
            self.buf.clear();
        }
        self.sock.as_mut().ok_or(Failed)
    }

    /// Writes `req` in seeded random chunks: sometimes whole, sometimes a
    /// byte at a time, usually a few pieces.
    async fn send(&mut self, req: &[u8]) -> Result<(), Failed> {
        let mode = self.rng.below(4);
        let mut cuts = Vec::new();
        let mut at = 0;
        while at < req.len() {
            let step = match mode {
                0 => req.len(),
                1 => 1,
                _ => 1 + self.rng.below(16) as usize,
            };
            at = (at + step).min(req.len());
            cuts.push(at);
        }
        let sock = self.connected().await?;
        let mut last = 0;
        for c in cuts {
            sock.write_all(&req[last..c]).await.map_err(|_| Failed)?;
            last = c;
        }
        Ok(())
    }

    async fn fill(&mut self) -> Result<(), Failed> {
        let mut tmp = [0u8; 4096];
        let sock = self.sock.as_mut().ok_or(Failed)?;
        let n = sock.read(&mut tmp).await.map_err(|_| Failed)?;
        if n == 0 {
            return Err(Failed);
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }

    async fn line(&mut self) -> Result<String, Failed> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                self.buf.drain(..p + 2);
                return Ok(l);
            }
            self.fill().await?;
        }
    }

    async fn block(&mut self, n: usize) -> Result<Vec<u8>, Failed> {
        while self.buf.len() < n + 2 {
            self.fill().await?;
        }
        let v = self.buf[..n].to_vec();
        self.buf.drain(..n + 2);
        Ok(v)
    }

    /// Sends `req` and reads one reply of shape `kind`, under the timeout. On
    /// failure the connection is dropped (the next call reconnects).
    async fn call(&mut self, req: Vec<u8>, kind: ReplyKind) -> Result<Reply, Failed> {
        let timeout = self.timeout;
        let fut = async {
            self.send(&req).await?;
            self.read_reply(kind).await
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(r)) => Ok(r),
            _ => {
                self.sock = None;
                self.buf.clear();
                Err(Failed)
            }
        }
    }

    async fn read_reply(&mut self, kind: ReplyKind) -> Result<Reply, Failed> {
        match kind {
            ReplyKind::Line => Ok(Reply::Line(self.line().await?)),
            ReplyKind::Get => {
                let mut values = Vec::new();
                loop {
                    let l = self.line().await?;
                    if l == "END" {
                        return Ok(Reply::Values(values));
                    }
                    let w: Vec<&str> = l.split(' ').collect();
                    if w.first() != Some(&"VALUE") || w.len() < 4 {
                        return Err(Failed);
                    }
                    let len: usize = w[3].parse().map_err(|_| Failed)?;
                    let cas = w.get(4).and_then(|c| c.parse().ok());
                    let v = self.block(len).await?;
                    values.push((v, cas));
                }
            }
            ReplyKind::Meta => {
                let l = self.line().await?;
                let mut w = l.split(' ');
                let code = w.next().unwrap_or("").to_string();
                let mut m = Meta {
                    code,
                    ..Meta::default()
                };
                if m.code == "VA" {
                    let len: usize = w.next().and_then(|x| x.parse().ok()).ok_or(Failed)?;
                    m.flags = w.map(String::from).collect();
                    m.value = self.block(len).await?;
                } else {
                    m.flags = w.map(String::from).collect();
                }
                Ok(Reply::Meta(m))
            }
        }
    }

    fn record(
        &self,
        kind: &'static str,
        key: &str,
        written: Option<Vec<u8>>,
        invoke: Duration,
        outcome: Outcome,
    ) {
        self.record_with_token(kind, key, written, None, invoke, outcome)
    }

    fn record_with_token(
        &self,
        kind: &'static str,
        key: &str,
        written: Option<Vec<u8>>,
        token: Option<u64>,
        invoke: Duration,
        outcome: Outcome,
    ) {
        self.rec.borrow_mut().op(Op {
            client: self.name.clone(),
            server: self.server,
            key: key.to_string(),
            kind,
            written,
            token,
            invoke,
            complete: now(),
            outcome,
        });
    }

    /// `get`/`gets`: the value and its CAS token, or `None` on a miss.
    pub async fn get(
        &mut self,
        key: &str,
        with_cas: bool,
    ) -> Result<Option<(Vec<u8>, Option<u64>)>, Failed> {
        let t = now();
        let cmd = if with_cas { "gets" } else { "get" };
        let r = self
            .call(format!("{cmd} {key}\r\n").into_bytes(), ReplyKind::Get)
            .await;
        let v = match r {
            Ok(Reply::Values(mut v)) => v.pop(),
            _ => {
                self.record("read", key, None, t, Outcome::Indeterminate);
                return Err(Failed);
            }
        };
        let outcome = match &v {
            Some((value, cas)) => Outcome::Value {
                value: value.clone(),
                cas: *cas,
            },
            None => Outcome::Miss,
        };
        self.record("read", key, None, t, outcome);
        Ok(v)
    }

    /// A storage command (`set`, `add`, `cas <token>`): true when stored.
    pub async fn store(
        &mut self,
        kind: &'static str,
        key: &str,
        value: &[u8],
        cas: Option<u64>,
    ) -> Result<bool, Failed> {
        let t = now();
        let head = match cas {
            Some(c) => format!("cas {key} 0 0 {} {c}\r\n", value.len()),
            None => format!("{kind} {key} 0 0 {}\r\n", value.len()),
        };
        let mut req = head.into_bytes();
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
        let r = self.call(req, ReplyKind::Line).await;
        let stored = match r {
            Ok(Reply::Line(l)) => l == "STORED",
            _ => {
                self.record_with_token(
                    kind,
                    key,
                    Some(value.to_vec()),
                    cas,
                    t,
                    Outcome::Indeterminate,
                );
                return Err(Failed);
            }
        };
        let outcome = if stored {
            Outcome::Stored
        } else {
            Outcome::Refused
        };
        self.record_with_token(kind, key, Some(value.to_vec()), cas, t, outcome);
        Ok(stored)
    }

    /// `incr`: the new value, or `None` if the key is missing.
    pub async fn incr(&mut self, key: &str, by: u64) -> Result<Option<u64>, Failed> {
        let t = now();
        let r = self
            .call(format!("incr {key} {by}\r\n").into_bytes(), ReplyKind::Line)
            .await;
        match r {
            Ok(Reply::Line(l)) => {
                // An incr writes its result: record it as a write of that
                // value so reads of the counter can be checked.
                let v = l.trim().parse::<u64>().ok();
                match v {
                    Some(n) => self.record(
                        "incr",
                        key,
                        Some(n.to_string().into_bytes()),
                        t,
                        Outcome::Stored,
                    ),
                    None => self.record("incr", key, None, t, Outcome::Refused),
                }
                Ok(v)
            }
            _ => {
                self.record("incr", key, None, t, Outcome::Indeterminate);
                Err(Failed)
            }
        }
    }

    /// A meta command (`mg`, `ms`, `md`): `line` is the command line
    /// without CRLF, `data` the value for `ms`.
    pub async fn meta(
        &mut self,
        key: &str,
        line: &str,
        data: Option<&[u8]>,
    ) -> Result<Meta, Failed> {
        let t = now();
        let mut req = format!("{line}\r\n").into_bytes();
        if let Some(d) = data {
            req.extend_from_slice(d);
            req.extend_from_slice(b"\r\n");
        }
        let kind: &'static str = if line.starts_with("ms") {
            "set"
        } else if line.starts_with("md") {
            "delete"
        } else {
            "read"
        };
        let r = self.call(req, ReplyKind::Meta).await;
        let m = match r {
            Ok(Reply::Meta(m)) => m,
            _ => {
                self.record(
                    kind,
                    key,
                    data.map(<[u8]>::to_vec),
                    t,
                    Outcome::Indeterminate,
                );
                return Err(Failed);
            }
        };
        let outcome = match (kind, m.code.as_str()) {
            ("read", "VA") => Outcome::Value {
                value: m.value.clone(),
                cas: m.num('c'),
            },
            ("read", "EN") => Outcome::Miss,
            (_, "HD") => Outcome::Stored,
            _ => Outcome::Refused,
        };
        // A vivified placeholder is not a value anybody wrote.
        let outcome = match outcome {
            Outcome::Value { ref value, .. } if value.is_empty() => Outcome::Miss,
            o => o,
        };
        self.record(kind, key, data.map(<[u8]>::to_vec), t, outcome);
        Ok(m)
    }
}

/// What shape of reply to read.
#[derive(Clone, Copy)]
enum ReplyKind {
    Line,
    Get,
    Meta,
}

enum Reply {
    Line(String),
    Values(Vec<(Vec<u8>, Option<u64>)>),
    Meta(Meta),
}
