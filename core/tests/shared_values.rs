//! Large values are sent from the store's own buffer: many readers of one
//! value hold one copy between them, readers keep the value they read while
//! the item changes, and idle connections give their buffers back.

use wasmcached_core::{Clock, Config, Connection, Store};

const CLOCK: Clock = Clock::new(0, 1_700_000_000);
const MB: usize = 1 << 20;

fn store() -> Store {
    Store::new(
        Config {
            item_size_max: 2 * MB as u32,
            memory_limit: 256 * MB as u64,
            ..Config::default()
        },
        CLOCK,
    )
}

/// Sends `req` and runs it, leaving the reply pending.
fn send(store: &mut Store, conn: &mut Connection, req: &[u8]) {
    conn.receive(req);
    let _ = conn.process(store, CLOCK);
}

/// Every pending chunk, concatenated (nothing is consumed).
fn pending(conn: &Connection) -> Vec<u8> {
    let mut out = Vec::new();
    for c in conn.output_chunks() {
        out.extend_from_slice(c);
    }
    assert_eq!(out.len(), conn.pending_len());
    out
}

/// Sends `req` and returns its whole reply, consumed.
fn call(store: &mut Store, conn: &mut Connection, req: &[u8]) -> Vec<u8> {
    send(store, conn, req);
    let out = pending(conn);
    conn.consume_output(out.len());
    out
}

fn set(store: &mut Store, key: &str, value: &[u8]) {
    let mut c = Connection::new();
    let mut req = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
    req.extend_from_slice(value);
    req.extend_from_slice(b"\r\n");
    assert_eq!(call(store, &mut c, &req), b"STORED\r\n");
}

fn value_reply(key: &str, value: &[u8]) -> Vec<u8> {
    let mut r = format!("VALUE {key} 0 {}\r\n", value.len()).into_bytes();
    r.extend_from_slice(value);
    r.extend_from_slice(b"\r\nEND\r\n");
    r
}

/// A value that is not one byte repeated, so misplaced bytes show.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| b'a' + ((i / 7 + usize::from(seed)) % 26) as u8)
        .collect()
}

#[test]
fn a_thousand_readers_of_one_megabyte_share_it() {
    let mut store = store();
    let value = pattern(MB, 0);
    set(&mut store, "big", &value);
    let want = value_reply("big", &value);
    let mut readers: Vec<Connection> = (0..1000).map(|_| Connection::new()).collect();
    for c in &mut readers {
        send(&mut store, c, b"get big\r\n");
    }
    let held: usize = readers.iter().map(Connection::held_bytes).sum();
    assert!(held < MB, "1,000 readers hold {held} bytes");
    for c in &readers {
        assert_eq!(pending(c), want);
        assert!(want.starts_with(c.pending_output()));
    }
    // Gone from the store, the value is still shared by the readers: none
    // of them is its only holder, so none counts it.
    let mut admin = Connection::new();
    assert_eq!(
        call(&mut store, &mut admin, b"delete big\r\n"),
        b"DELETED\r\n"
    );
    let held: usize = readers.iter().map(Connection::held_bytes).sum();
    assert!(held < MB, "{held}");
    // The last reader left holding it does count it.
    let last = readers.pop().unwrap();
    for mut c in readers {
        let n = c.pending_len();
        c.consume_output(n);
    }
    assert!(last.held_bytes() >= MB);
    assert_eq!(pending(&last), want);
}

#[test]
fn meta_get_shares_too() {
    let mut store = store();
    let value = pattern(300_000, 3);
    set(&mut store, "m", &value);
    let mut readers: Vec<Connection> = (0..100).map(|_| Connection::new()).collect();
    let mut want = b"VA 300000 s300000\r\n".to_vec();
    want.extend_from_slice(&value);
    want.extend_from_slice(b"\r\n");
    for c in &mut readers {
        send(&mut store, c, b"mg m v s\r\n");
        assert_eq!(pending(c), want);
    }
    let held: usize = readers.iter().map(Connection::held_bytes).sum();
    assert!(held < 300_000, "{held}");
}

#[test]
fn overwriting_leaves_readers_their_value() {
    let mut store = store();
    let old = pattern(MB, 1);
    let new = pattern(MB - 5, 2);
    set(&mut store, "k", &old);
    let mut before = Connection::new();
    send(&mut store, &mut before, b"get k\r\n");
    set(&mut store, "k", &new);
    let mut after = Connection::new();
    send(&mut store, &mut after, b"get k\r\n");
    assert_eq!(pending(&before), value_reply("k", &old));
    assert_eq!(pending(&after), value_reply("k", &new));
    // The old value now belongs to its reader alone.
    assert!(before.held_bytes() >= MB);
    assert!(after.held_bytes() < 4096);
    assert!(store.check_invariants().is_ok());
}

#[test]
fn incr_append_and_touch_while_a_reader_holds_the_value() {
    let mut store = store();
    let mut value = b"41".to_vec();
    value.resize(40_000, b' ');
    set(&mut store, "n", &value);
    let mut reader = Connection::new();
    send(&mut store, &mut reader, b"get n\r\n");
    let mut c = Connection::new();

    // While a reader is sending the value, incr does not write into it:
    // like memcached (an item refcount above the store's own) it links a
    // new item holding just the number, and the reader keeps the bytes it
    // started sending.
    assert_eq!(call(&mut store, &mut c, b"incr n 1\r\n"), b"42\r\n");
    assert_eq!(
        call(&mut store, &mut c, b"get n\r\n"),
        value_reply("n", b"42")
    );
    assert_eq!(pending(&reader), value_reply("n", &value));
    // With nobody sending it, the number is written in place, padded.
    let mut padded = b"42".to_vec();
    padded.resize(40_000, b' ');
    set(&mut store, "n", &padded);
    assert_eq!(call(&mut store, &mut c, b"incr n 1\r\n"), b"43\r\n");

    let mut reader2 = Connection::new();
    send(&mut store, &mut reader2, b"gets n\r\n");
    let before_append = pending(&reader2);
    assert_eq!(
        call(&mut store, &mut c, b"append n 0 0 4\r\ntail\r\n"),
        b"STORED\r\n"
    );
    let mut appended = b"43".to_vec();
    appended.resize(40_000, b' ');
    appended.extend_from_slice(b"tail");
    assert_eq!(
        call(&mut store, &mut c, b"get n\r\n"),
        value_reply("n", &appended)
    );

    // touch and gat change the exptime (the record's head grows by its
    // exptime word); the value buffer is kept, not copied.
    let mut reader3 = Connection::new();
    send(&mut store, &mut reader3, b"get n\r\n");
    assert_eq!(call(&mut store, &mut c, b"touch n 100\r\n"), b"TOUCHED\r\n");
    let gat = call(&mut store, &mut c, b"gat 0 n\r\n");
    assert_eq!(gat, value_reply("n", &appended));
    let mg = call(&mut store, &mut c, b"mg n t s\r\n");
    assert_eq!(mg, b"HD t-1 s40004\r\n");
    assert_eq!(call(&mut store, &mut c, b"touch n 50\r\n"), b"TOUCHED\r\n");
    assert_eq!(call(&mut store, &mut c, b"mg n t\r\n"), b"HD t50\r\n");
    // One copy of the value in the store, shared with reader3: neither a
    // touch nor a gat made another.
    assert!(reader3.held_bytes() < 4096);

    // Every reader still has what it read.
    assert_eq!(pending(&reader), value_reply("n", &value));
    assert_eq!(pending(&reader2), before_append);
    assert!(before_append.starts_with(b"VALUE n 0 40000 "));
    assert_eq!(pending(&reader3), value_reply("n", &appended));
    assert!(store.check_invariants().is_ok());
}

#[test]
fn replies_arrive_whole_through_partial_writes() {
    let mut store = store();
    let a = pattern(70_000, 4);
    let b = pattern(5_000, 5);
    set(&mut store, "a", &a);
    set(&mut store, "b", &b);
    let mut c = Connection::new();
    send(&mut store, &mut c, b"get a b a\r\nmg b v\r\nmg a v k\r\n");
    let mut want = format!("VALUE a 0 {}\r\n", a.len()).into_bytes();
    want.extend_from_slice(&a);
    want.extend_from_slice(format!("\r\nVALUE b 0 {}\r\n", b.len()).as_bytes());
    want.extend_from_slice(&b);
    want.extend_from_slice(format!("\r\nVALUE a 0 {}\r\n", a.len()).as_bytes());
    want.extend_from_slice(&a);
    want.extend_from_slice(format!("\r\nEND\r\nVA {}\r\n", b.len()).as_bytes());
    want.extend_from_slice(&b);
    want.extend_from_slice(format!("\r\nVA {} ka\r\n", a.len()).as_bytes());
    want.extend_from_slice(&a);
    want.extend_from_slice(b"\r\n");
    assert_eq!(pending(&c), want);
    // A host writing one chunk at a time, in uneven pieces.
    let mut got = Vec::new();
    let mut step = 1;
    while c.pending_len() > 0 {
        let chunk = c.pending_output();
        let n = chunk.len().min(step);
        got.extend_from_slice(&chunk[..n]);
        c.consume_output(n);
        step = step * 3 + 1;
    }
    assert_eq!(got, want);
    assert!(c.pending_output().is_empty());
    assert_eq!(c.output_chunks().count(), 0);
}

#[test]
fn shrink_returns_capacity_once_idle() {
    let mut store = store();
    let mut c = Connection::new();
    // A 1 MB request grows the input buffer; a 1 MB reply of copied values
    // grows the output buffer.
    let mut req = format!("set big 0 0 {MB}\r\n").into_bytes();
    req.extend_from_slice(&pattern(MB, 6));
    req.extend_from_slice(b"\r\n");
    assert_eq!(call(&mut store, &mut c, &req), b"STORED\r\n");
    let small = pattern(10_000, 7);
    let mut keys = String::from("get");
    for i in 0..100 {
        set(&mut store, &format!("s{i}"), &small);
        keys.push_str(&format!(" s{i}"));
    }
    keys.push_str("\r\n");
    send(&mut store, &mut c, keys.as_bytes());
    assert!(c.pending_len() > 1_000_000);
    // Nothing is freed while the reply is pending.
    c.shrink();
    let busy = c.held_bytes();
    assert!(busy > 1_000_000, "{busy}");
    let n = c.pending_len();
    c.consume_output(n);
    assert!(c.held_bytes() > 1_000_000, "capacity is kept until shrink");
    c.shrink();
    assert!(c.held_bytes() <= 8 * 1024, "{}", c.held_bytes());
    // And the connection works as before.
    assert_eq!(
        call(&mut store, &mut c, b"get s1\r\n"),
        value_reply("s1", &small)
    );
}
