//! A small memcached client (text + meta) for simulated clients: seeded
//! random chunking of every request (turmoil keeps write boundaries, so
//! the client makes split and coalesced writes itself), pipelining,
//! timeouts, reconnects, and a history record for every operation.
//!
//! Every request is recorded as an [`Op`]: the structured command
//! ([`Cmd`]) and the reply as the client parsed it ([`Outcome`]). A request
//! that times out, or whose connection breaks before its reply, is
//! recorded as [`Outcome::Indeterminate`] and the connection is dropped
//! (the next call reconnects).

use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpStream;

use crate::host::PORT;
use crate::rng::Rng;
use crate::trace::{now, Cause, Cmd, Hit, Mode, Op, Outcome, Shared};

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

/// One request: the key and command for the history, its bytes on the
/// wire, and the shape of its reply.
#[derive(Clone, Debug)]
pub struct Request {
    /// Key.
    pub key: String,
    /// What it asks, for the history.
    pub cmd: Cmd,
    /// Every key of a multi-key `get`/`gets` (empty for one key).
    pub keys: Vec<String>,
    wire: Vec<u8>,
    shape: Shape,
}

/// What shape of reply to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Line,
    Get,
    Meta,
}

impl Request {
    /// `get` (or `gets` with `with_cas`).
    pub fn get(key: &str, with_cas: bool) -> Request {
        let cmd = if with_cas { "gets" } else { "get" };
        Request {
            key: key.into(),
            cmd: Cmd::Get,
            keys: Vec::new(),
            wire: format!("{cmd} {key}\r\n").into_bytes(),
            shape: Shape::Get,
        }
    }

    /// A multi-key `get` (or `gets` with `with_cas`): recorded as one read
    /// per key, each a hit or a miss of that key.
    pub fn get_multi(keys: &[String], with_cas: bool) -> Request {
        let cmd = if with_cas { "gets" } else { "get" };
        Request {
            key: keys.first().cloned().unwrap_or_default(),
            cmd: Cmd::Get,
            keys: keys.to_vec(),
            wire: format!("{cmd} {}\r\n", keys.join(" ")).into_bytes(),
            shape: Shape::Get,
        }
    }

    /// Whether this is a multi-key read.
    pub fn is_multi(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether a read asks for CAS values (`gets`).
    pub fn with_cas(&self) -> bool {
        self.wire.starts_with(b"gets ")
    }

    /// A text storage command (`cas` when `mode` is [`Mode::Cas`]).
    pub fn store(
        mode: Mode,
        key: &str,
        value: &[u8],
        flags: u32,
        ttl: i64,
        cas: Option<u64>,
    ) -> Request {
        let verb = match mode {
            Mode::Set => "set",
            Mode::Add => "add",
            Mode::Replace => "replace",
            Mode::Append => "append",
            Mode::Prepend => "prepend",
            Mode::Cas => "cas",
        };
        let mut wire = match (mode, cas) {
            (Mode::Cas, Some(c)) => format!("cas {key} {flags} {ttl} {} {c}\r\n", value.len()),
            _ => format!("{verb} {key} {flags} {ttl} {}\r\n", value.len()),
        }
        .into_bytes();
        wire.extend_from_slice(value);
        wire.extend_from_slice(b"\r\n");
        Request {
            key: key.into(),
            cmd: Cmd::Store {
                mode,
                value: value.to_vec(),
                flags,
                ttl,
                cas: cas.filter(|_| mode == Mode::Cas),
            },
            keys: Vec::new(),
            wire,
            shape: Shape::Line,
        }
    }

    /// `delete`.
    pub fn delete(key: &str) -> Request {
        Request {
            key: key.into(),
            cmd: Cmd::Delete { cas: None },
            keys: Vec::new(),
            wire: format!("delete {key}\r\n").into_bytes(),
            shape: Shape::Line,
        }
    }

    /// `incr` / `decr`.
    pub fn incr(key: &str, delta: u64, decr: bool) -> Request {
        let verb = if decr { "decr" } else { "incr" };
        Request {
            key: key.into(),
            cmd: Cmd::Incr { delta, decr },
            keys: Vec::new(),
            wire: format!("{verb} {key} {delta}\r\n").into_bytes(),
            shape: Shape::Line,
        }
    }

    /// `touch`.
    pub fn touch(key: &str, ttl: i64) -> Request {
        Request {
            key: key.into(),
            cmd: Cmd::Touch { ttl },
            keys: Vec::new(),
            wire: format!("touch {key} {ttl}\r\n").into_bytes(),
            shape: Shape::Line,
        }
    }

    /// A meta command line (`mg`, `ms`, `md`, `ma`; without CRLF) and the
    /// data block for `ms`. The command recorded is derived from the
    /// line's flags.
    pub fn meta(key: &str, line: &str, data: Option<&[u8]>) -> Request {
        let mut wire = format!("{line}\r\n").into_bytes();
        if let Some(d) = data {
            wire.extend_from_slice(d);
            wire.extend_from_slice(b"\r\n");
        }
        Request {
            key: key.into(),
            cmd: meta_cmd(line, data),
            keys: Vec::new(),
            wire,
            shape: Shape::Meta,
        }
    }
}

/// The command a meta line asks for, as the checker models it.
fn meta_cmd(line: &str, data: Option<&[u8]>) -> Cmd {
    let mut words = line.split(' ');
    let verb = words.next().unwrap_or("");
    let _key = words.next();
    if verb == "ms" {
        let _len = words.next();
    }
    let flags: Vec<&str> = words.filter(|w| !w.is_empty()).collect();
    let num = |f: char| {
        flags
            .iter()
            .find(|w| w.starts_with(f) && w.len() > 1)
            .and_then(|w| w[1..].parse::<i64>().ok())
    };
    let has = |f: char| flags.iter().any(|w| w.starts_with(f));
    match verb {
        "ms" => {
            let cas = num('C').map(|c| c as u64);
            let mode = match flags.iter().find(|w| w.starts_with('M')) {
                Some(m) => match m.as_bytes().get(1).map(u8::to_ascii_uppercase) {
                    Some(b'E') => Mode::Add,
                    Some(b'A') => Mode::Append,
                    Some(b'P') => Mode::Prepend,
                    Some(b'R') => Mode::Replace,
                    _ => Mode::Set,
                },
                None => Mode::Set,
            };
            let mode = match (mode, cas) {
                (Mode::Set | Mode::Replace, Some(_)) => Mode::Cas,
                (m, _) => m,
            };
            Cmd::Store {
                mode,
                value: data.unwrap_or_default().to_vec(),
                flags: num('F').unwrap_or(0) as u32,
                ttl: num('T').unwrap_or(0),
                cas,
            }
        }
        "md" if has('I') => Cmd::Invalidate { ttl: num('T') },
        "md" => Cmd::Delete {
            cas: num('C').map(|c| c as u64),
        },
        "ma" => Cmd::Incr {
            delta: num('D').unwrap_or(1) as u64,
            decr: flags.iter().any(|w| w.eq_ignore_ascii_case("MD")),
        },
        _ => {
            let (vivify, recache, touch) = (num('N'), num('R'), num('T'));
            if vivify.is_none() && recache.is_none() && touch.is_none() {
                Cmd::Get
            } else {
                Cmd::MetaGet {
                    vivify,
                    recache,
                    touch,
                }
            }
        }
    }
}

/// One `VALUE` of a `get` reply: key, data, flags, CAS value.
type Value = (String, Vec<u8>, u32, Option<u64>);

/// A parsed reply.
#[derive(Clone, Debug)]
enum Reply {
    Line(String),
    Values(Vec<Value>),
    Meta(Meta),
}

/// A client of one server.
pub struct Client {
    name: Rc<str>,
    server: &'static str,
    sock: Option<TcpStream>,
    buf: Vec<u8>,
    rng: Rng,
    rec: Shared,
    timeout: Duration,
    written: u64,
    /// The local address of the current connection.
    addr: Option<std::net::SocketAddr>,
    /// Write each request in seeded random pieces (the default).
    chunked: bool,
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
            name: name.into(),
            server,
            sock: None,
            buf: Vec::new(),
            rng,
            rec,
            timeout,
            written: 0,
            addr: None,
            chunked: true,
        }
    }

    /// A tag no other write of the run carries (`<client>#<n>`): writers
    /// put it in their values so every value read names its write.
    pub fn unique(&mut self) -> String {
        self.written += 1;
        format!("{}#{}", self.name, self.written)
    }

    /// Writes every request whole from now on: for scenarios about
    /// something else than framing, where a request split into dozens of
    /// segments only costs simulation time.
    pub fn whole_writes(mut self) -> Client {
        self.chunked = false;
        self
    }

    /// The client's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client's RNG (workload decisions use it too).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// The server this client talks to.
    pub fn server(&self) -> &'static str {
        self.server
    }

    /// Drops the connection (the next request reconnects).
    pub fn disconnect(&mut self) {
        self.sock = None;
        self.addr = None;
        self.buf.clear();
    }

    async fn connected(&mut self) -> Result<&mut TcpStream, Failed> {
        if self.sock.is_none() {
            let s = TcpStream::connect((self.server, PORT))
                .await
                .map_err(|_| Failed)?;
            self.addr = s.local_addr().ok();
            self.sock = Some(s);
            self.buf.clear();
        }
        self.sock.as_mut().ok_or(Failed)
    }

    /// Writes `req` in seeded random chunks: sometimes whole, sometimes a
    /// byte at a time, usually a few pieces.
    async fn send(&mut self, req: &[u8]) -> Result<(), Failed> {
        let mode = if self.chunked { self.rng.below(4) } else { 0 };
        let mut cuts = Vec::new();
        let mut at = 0;
        while at < req.len() {
            let step = match mode {
                0 => req.len(),
                // A byte at a time, for short requests: long values a
                // byte per segment only cost simulation time.
                1 if req.len() <= 256 => 1,
                1 => 1 + self.rng.below(4096) as usize,
                _ => 1 + self.rng.below(16.max(req.len() as u64 / 4)) as usize,
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
        let mut from = 0;
        loop {
            if let Some(p) = self.buf[from..].windows(2).position(|w| w == b"\r\n") {
                let p = from + p;
                let l = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                self.buf.drain(..p + 2);
                return Ok(l);
            }
            from = self.buf.len().saturating_sub(1);
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

    async fn read_reply(&mut self, shape: Shape) -> Result<Reply, Failed> {
        match shape {
            Shape::Line => Ok(Reply::Line(self.line().await?)),
            Shape::Get => {
                let mut values = Vec::new();
                loop {
                    let l = self.line().await?;
                    if l == "END" {
                        return Ok(Reply::Values(values));
                    }
                    let w: Vec<&str> = l.split(' ').collect();
                    if w.first() != Some(&"VALUE") || w.len() < 4 {
                        return Ok(Reply::Line(l));
                    }
                    let flags: u32 = w[2].parse().map_err(|_| Failed)?;
                    let len: usize = w[3].parse().map_err(|_| Failed)?;
                    let cas = w.get(4).and_then(|c| c.parse().ok());
                    let v = self.block(len).await?;
                    values.push((w[1].to_string(), v, flags, cas));
                }
            }
            Shape::Meta => {
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
                } else if m.code.len() == 2 {
                    m.flags = w.map(String::from).collect();
                } else {
                    return Ok(Reply::Line(l));
                }
                Ok(Reply::Meta(m))
            }
        }
    }

    /// Sends `reqs` pipelined (one chunked write sequence) and reads their
    /// replies in order, all under one timeout. Every request is recorded;
    /// those without a reply as indeterminate, and then the connection is
    /// dropped.
    pub async fn pipeline(&mut self, reqs: &[Request]) -> Vec<Result<Outcome, Failed>> {
        let invoke = now();
        let first = self.rec.borrow_mut().seq();
        let mut wire = Vec::new();
        for r in reqs {
            wire.extend_from_slice(&r.wire);
        }
        let mut replies: Vec<Reply> = Vec::with_capacity(reqs.len());
        let mut completes = Vec::with_capacity(reqs.len());
        let timeout = self.timeout;
        let mut conn = None;
        let got = tokio::time::timeout(timeout, async {
            self.connected().await?;
            conn = self.addr;
            self.send(&wire).await?;
            for r in reqs {
                let reply = self.read_reply(r.shape).await?;
                replies.push(reply);
                completes.push(now());
            }
            Ok::<(), Failed>(())
        })
        .await;
        if !matches!(got, Ok(Ok(()))) {
            self.disconnect();
        }
        let mut out = Vec::with_capacity(reqs.len());
        for (i, r) in reqs.iter().enumerate() {
            let reply = replies.get(i);
            let complete = completes.get(i).copied().unwrap_or_else(now);
            let mut result = Err(Failed);
            for (n, (key, outcome)) in per_key(r, reply).into_iter().enumerate() {
                if n == 0 && outcome != Outcome::Indeterminate {
                    result = Ok(outcome.clone());
                }
                self.rec.borrow_mut().op(Op {
                    client: self.name.clone(),
                    server: self.server,
                    key,
                    cmd: r.cmd.clone(),
                    invoke,
                    complete,
                    first,
                    last: 0,
                    conn,
                    outcome,
                });
            }
            out.push(result);
        }
        out
    }

    /// Sends one request; its outcome (indeterminate is `Err`).
    pub async fn call(&mut self, req: Request) -> Result<Outcome, Failed> {
        self.pipeline(std::slice::from_ref(&req))
            .await
            .pop()
            .unwrap_or(Err(Failed))
    }

    /// Sends one meta request and returns the raw meta reply (the lease
    /// protocol needs its flags), recording it like any other.
    pub async fn meta(
        &mut self,
        key: &str,
        line: &str,
        data: Option<&[u8]>,
    ) -> Result<Meta, Failed> {
        let req = Request::meta(key, line, data);
        let invoke = now();
        let first = self.rec.borrow_mut().seq();
        let timeout = self.timeout;
        let mut conn = None;
        let got = tokio::time::timeout(timeout, async {
            self.connected().await?;
            conn = self.addr;
            self.send(&req.wire).await?;
            self.read_reply(Shape::Meta).await
        })
        .await;
        let reply = match got {
            Ok(Ok(r)) => Some(r),
            _ => {
                self.disconnect();
                None
            }
        };
        let outcome = reply
            .as_ref()
            .map_or(Outcome::Indeterminate, |r| outcome(&req.cmd, r));
        self.rec.borrow_mut().op(Op {
            client: self.name.clone(),
            server: self.server,
            key: req.key,
            cmd: req.cmd,
            invoke,
            complete: now(),
            first,
            last: 0,
            conn,
            outcome,
        });
        match reply {
            Some(Reply::Meta(m)) => Ok(m),
            Some(Reply::Line(l)) => Ok(Meta {
                code: l,
                ..Meta::default()
            }),
            _ => Err(Failed),
        }
    }

    /// `get`/`gets`: the value and its CAS token, or `None` on a miss.
    pub async fn get(
        &mut self,
        key: &str,
        with_cas: bool,
    ) -> Result<Option<(Vec<u8>, Option<u64>)>, Failed> {
        match self.call(Request::get(key, with_cas)).await? {
            Outcome::Value(h) => Ok(Some((h.value, h.cas))),
            Outcome::Miss => Ok(None),
            _ => Err(Failed),
        }
    }

    /// A storage command (`set`, `add`, `cas` with a token) with flags 0
    /// and no expiry: true when stored.
    pub async fn store(
        &mut self,
        kind: &'static str,
        key: &str,
        value: &[u8],
        cas: Option<u64>,
    ) -> Result<bool, Failed> {
        let mode = match kind {
            "add" => Mode::Add,
            "replace" => Mode::Replace,
            "append" => Mode::Append,
            "prepend" => Mode::Prepend,
            _ if cas.is_some() => Mode::Cas,
            _ => Mode::Set,
        };
        self.write(mode, key, value, 0, 0, cas).await
    }

    /// A storage command with flags and exptime: true when stored.
    pub async fn write(
        &mut self,
        mode: Mode,
        key: &str,
        value: &[u8],
        flags: u32,
        ttl: i64,
        cas: Option<u64>,
    ) -> Result<bool, Failed> {
        let o = self
            .call(Request::store(mode, key, value, flags, ttl, cas))
            .await?;
        Ok(o == Outcome::Stored)
    }

    /// `incr`: the new value, or `None` if the key is missing.
    pub async fn incr(&mut self, key: &str, by: u64) -> Result<Option<u64>, Failed> {
        match self.call(Request::incr(key, by, false)).await? {
            Outcome::Number(n) => Ok(Some(n)),
            _ => Ok(None),
        }
    }

    /// `delete`: true when something was deleted.
    pub async fn delete(&mut self, key: &str) -> Result<bool, Failed> {
        Ok(self.call(Request::delete(key)).await? == Outcome::Stored)
    }

    /// `flush_all`, recorded as a window in which every item of this
    /// server may vanish.
    pub async fn flush_all(&mut self) -> Result<(), Failed> {
        self.admin(b"flush_all\r\n", Cause::Flush).await
    }

    /// `cache_memlimit <mb>`: the server evicts down to the new limit (and
    /// later stores evict under it), so it is recorded as a window in
    /// which every item of this server may be evicted. A refusal
    /// (`MEMLIMIT_TOO_SMALL`) is an error.
    pub async fn cache_memlimit(&mut self, mb: u64) -> Result<(), Failed> {
        let line = format!("cache_memlimit {mb}\r\n");
        self.admin(line.as_bytes(), Cause::Eviction).await
    }

    /// A command for the whole server that answers `OK`, recorded as a
    /// disruption of `cause` over its window; unanswered, it may have run
    /// any time from its sending on.
    async fn admin(&mut self, wire: &[u8], cause: Cause) -> Result<(), Failed> {
        let invoke = now();
        let first = self.rec.borrow_mut().seq();
        let timeout = self.timeout;
        let got = tokio::time::timeout(timeout, async {
            self.send(wire).await?;
            self.line().await
        })
        .await;
        let answered = matches!(&got, Ok(Ok(_)));
        let ok = matches!(&got, Ok(Ok(l)) if l == "OK");
        if !answered {
            self.disconnect();
        }
        let mut rec = self.rec.borrow_mut();
        if answered {
            rec.disrupt(self.server, invoke, first, cause);
        } else {
            rec.disrupt_open(self.server, invoke, first, cause);
        }
        drop(rec);
        if ok {
            Ok(())
        } else {
            Err(Failed)
        }
    }
}

/// What `r` did to each of its keys, given its reply (`None`: no reply).
/// A multi-key read gives one read per key asked: the `VALUE` of that key
/// (the first not yet taken, so a key asked twice takes its two values in
/// turn) or a miss; a `VALUE` of a key not asked is recorded as a read of
/// that key, so the checkers judge it too.
fn per_key(r: &Request, reply: Option<&Reply>) -> Vec<(String, Outcome)> {
    let Some(reply) = reply else {
        let keys = if r.is_multi() {
            &r.keys[..]
        } else {
            std::slice::from_ref(&r.key)
        };
        return keys
            .iter()
            .map(|k| (k.clone(), Outcome::Indeterminate))
            .collect();
    };
    match reply {
        Reply::Values(values) if r.is_multi() => split_values(&r.keys, values),
        Reply::Line(_) | Reply::Meta(_) if r.is_multi() => {
            let o = outcome(&r.cmd, reply);
            r.keys.iter().map(|k| (k.clone(), o.clone())).collect()
        }
        _ => vec![(r.key.clone(), outcome(&r.cmd, reply))],
    }
}

/// A multi-key `get` reply as one read per key (see [`per_key`]).
fn split_values(keys: &[String], values: &[Value]) -> Vec<(String, Outcome)> {
    let mut out: Vec<(String, Outcome)> = keys.iter().map(|k| (k.clone(), Outcome::Miss)).collect();
    for v in values {
        let (key, hit) = (&v.0, hit(v));
        match out
            .iter_mut()
            .find(|(k, o)| k == key && *o == Outcome::Miss)
        {
            Some(slot) => slot.1 = hit,
            None => out.push((key.clone(), hit)),
        }
    }
    out
}

/// A `VALUE` line of a text `get` reply as a read's outcome.
fn hit((_, value, flags, cas): &Value) -> Outcome {
    Outcome::Value(Hit {
        value: value.clone(),
        flags: Some(*flags),
        cas: *cas,
        win: false,
        sent: false,
        stale: false,
    })
}

/// The outcome of `cmd` given its parsed reply.
fn outcome(cmd: &Cmd, reply: &Reply) -> Outcome {
    match reply {
        Reply::Values(v) => v.last().map_or(Outcome::Miss, hit),
        Reply::Line(l) => match l.as_str() {
            "STORED" | "DELETED" | "TOUCHED" | "OK" => Outcome::Stored,
            "NOT_STORED" => Outcome::NotStored,
            "EXISTS" => Outcome::Exists,
            "NOT_FOUND" => Outcome::NotFound,
            l => match l.trim_end().parse::<u64>() {
                Ok(n) if matches!(cmd, Cmd::Incr { .. }) => Outcome::Number(n),
                _ => Outcome::Error(l.to_string()),
            },
        },
        Reply::Meta(m) => match m.code.as_str() {
            "VA" if matches!(cmd, Cmd::Incr { .. }) => String::from_utf8_lossy(&m.value)
                .trim()
                .parse()
                .map_or_else(|_| Outcome::Error("VA".into()), Outcome::Number),
            "VA" => Outcome::Value(Hit {
                value: m.value.clone(),
                flags: m.num('f').map(|f| f as u32),
                cas: m.num('c'),
                win: m.has('W'),
                sent: m.has('Z'),
                stale: m.has('X'),
            }),
            "EN" => Outcome::Miss,
            "HD" => Outcome::Stored,
            "NS" => Outcome::NotStored,
            "EX" => Outcome::Exists,
            "NF" => Outcome::NotFound,
            other => Outcome::Error(other.to_string()),
        },
    }
}
