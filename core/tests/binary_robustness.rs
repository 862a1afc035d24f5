//! The binary protocol under hostile input: seeded random packets with
//! random opcodes, lengths (including lengths that lie), magic bytes,
//! extras and CAS values, several connections on one small store. Every
//! stream must give the same replies whole and in random chunks, keep the
//! store's invariants, and never buffer more than the limits allow.

mod common;

use common::{feed, feed_checking, Rng};
use wasmcached_core::{Clock, Config, Connection, SaslDb, Store};

const CLOCK: Clock = Clock::new(0, 1_700_000_000);

fn config(sasl: bool) -> Config {
    Config {
        memory_limit: 64 * 1024,
        item_size_max: 4096,
        sasl: sasl.then(|| SaslDb::parse(b"u:p\n")),
        ..Config::default()
    }
}

/// The extras length each opcode takes (0 for the rest).
fn extras_len(opcode: u8) -> usize {
    match opcode {
        0x01..=0x03 | 0x11..=0x13 => 8,
        0x05 | 0x06 | 0x15 | 0x16 => 20,
        0x1c..=0x1e | 0x23 | 0x24 => 4,
        0x08 | 0x18 => 4 * usize::from(opcode & 1 == 0),
        _ => 0,
    }
}

/// One packet: well formed for its opcode, except now and then one field
/// that lies (magic, extras, key or body length), which memcached answers
/// with an error and usually a close.
fn packet(rng: &mut Rng, sasl: bool) -> Vec<u8> {
    let mut opcode = if rng.chance(95) {
        rng.below(0x25) as u8
    } else {
        rng.next() as u8
    };
    if matches!(opcode, 0x07 | 0x17) && rng.chance(97) {
        // quit ends the stream: rarely.
        opcode = 0x0a;
    }
    if sasl && matches!(opcode, 0x20..=0x22) && rng.chance(95) {
        // Every SASL command drops the authentication, and the next other
        // command then closes: rarely too.
        opcode = 0x0a;
    }
    // memcached swallows an unknown command's body after its key, eating
    // into the next packet: unknown opcodes come bare unless they lie.
    let known = opcode <= 0x24 && !matches!(opcode, 0x1b | 0x1f);
    if opcode == 0x21 && rng.chance(50) {
        // A well-formed PLAIN auth now and then, so -S streams get past it.
        return auth(rng.chance(80));
    }
    let lie = rng.below(300) == 0;
    let keylen = if lie && rng.chance(30) {
        251
    } else if !known || matches!(opcode, 0x07 | 0x08 | 0x0a | 0x0b | 0x17 | 0x18 | 0x20) {
        0
    } else {
        rng.pick(&[1, 3, 10, 250])
    };
    let key: Vec<u8> = (0..keylen).map(|_| b'a' + rng.below(4) as u8).collect();
    let elen = if lie && rng.chance(30) {
        rng.pick(&[0, 3, 4, 8, 20])
    } else {
        extras_len(opcode)
    };
    let extras: Vec<u8> = (0..elen).map(|_| rng.pick(&[0, 0, 1, 0xff])).collect();
    let takes_value = matches!(opcode, 0x01..=0x03 | 0x0e | 0x0f | 0x11..=0x13 | 0x19 | 0x1a);
    let vlen = if takes_value {
        rng.pick(&[0, 1, 5, 5, 20, 100, 1000, 5000])
    } else {
        0
    };
    let value: Vec<u8> = (0..vlen).map(|_| b'0' + rng.below(10) as u8).collect();
    let mut bodylen = (extras.len() + key.len() + value.len()) as u32;
    if lie && rng.chance(30) {
        bodylen = rng.pick(&[0, 1, bodylen.wrapping_sub(1), bodylen + 7, 0x8000_0010]);
    }
    let magic = if lie && rng.chance(10) { 0x81 } else { 0x80 };
    let mut p = vec![magic, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    p.extend_from_slice(&bodylen.to_be_bytes());
    p.extend_from_slice(&(rng.next() as u32).to_be_bytes());
    p.extend_from_slice(&rng.pick(&[0u64, 0, 0, 1, 2, 3, u64::MAX]).to_be_bytes());
    p.extend_from_slice(&extras);
    p.extend_from_slice(&key);
    p.extend_from_slice(&value);
    p
}

fn auth(good: bool) -> Vec<u8> {
    let data: &[u8] = if good { b"\0u\0p" } else { b"\0u\0x" };
    let mut p = vec![0x80, 0x21, 0, 5, 0, 0, 0, 0];
    p.extend_from_slice(&((5 + data.len()) as u32).to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    p.extend_from_slice(b"PLAIN");
    p.extend_from_slice(data);
    p
}

/// Feeds `chunks` one at a time, processing fully after each, with the
/// buffering bounds checked on every pass.
fn feed_checked(conn: &mut Connection, store: &mut Store, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
    feed_checking(conn, store, CLOCK, chunks, |conn| {
        // A header, 255 bytes of extras and a 64 KiB key, or a value
        // within -I, plus what one chunk brought: never more.
        assert!(
            conn.held_bytes() <= 512 * 1024,
            "held {}",
            conn.held_bytes()
        );
    })
}

fn run(seed: u64, sasl: bool) {
    let mut rng = Rng(seed);
    let mut stream = Vec::new();
    if sasl && rng.chance(80) {
        stream.extend(auth(true));
    }
    stream.extend((0..60).flat_map(|_| packet(&mut rng, sasl)));
    let mut whole_store = Store::new(config(sasl), CLOCK);
    let mut whole = Connection::new();
    let (want, want_closed) = feed(&mut whole, &mut whole_store, CLOCK, &[&stream]);
    whole_store.check_invariants().unwrap();

    let mut cuts = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let span = if rng.chance(20) { 3 } else { 200 };
        at += 1 + rng.below(span) as usize;
        cuts.push(at.min(stream.len()));
    }
    let mut chunks = Vec::new();
    let mut last = 0;
    for c in cuts {
        chunks.push(&stream[last..c]);
        last = c;
    }
    let mut store = Store::new(config(sasl), CLOCK);
    let mut conn = Connection::new();
    let (got, closed) = feed_checked(&mut conn, &mut store, &chunks);
    store.check_invariants().unwrap();
    assert_eq!(closed, want_closed, "seed {seed}: close differs by split");
    // Replies are held while a refused value is swallowed (as memcached
    // holds them); a stream that ends mid-swallow has sent more or less of
    // them depending on the split, but the same bytes in all.
    let (held, want_held) = (conn.pending_len(), whole.pending_len());
    let same = if held == 0 && want_held == 0 {
        got == want
    } else {
        got.len() + held == want.len() + want_held
            && (got.starts_with(&want) || want.starts_with(&got))
    };
    assert!(
        same,
        "seed {seed}: replies differ by split: {}",
        wasmcached_core::transcript::describe_difference(&want, &got)
    );
}

#[test]
fn random_packets_any_split_same_replies() {
    for seed in 0..2000 {
        run(seed, false);
    }
}

#[test]
fn random_packets_under_sasl_any_split_same_replies() {
    for seed in 10_000..12_000 {
        run(seed, true);
    }
}

/// Many connections on one store, each streaming random packets, in
/// random interleavings.
#[test]
fn random_packets_on_many_connections_keep_the_store_sound() {
    let mut rng = Rng(77);
    let mut store = Store::new(config(false), CLOCK);
    let mut conns: Vec<Connection> = (0..8).map(|_| Connection::new()).collect();
    for _ in 0..4000 {
        let i = rng.below(conns.len() as u64) as usize;
        let p = packet(&mut rng, false);
        let (_, closed) = feed(&mut conns[i], &mut store, CLOCK, &[&p]);
        if closed {
            conns[i] = Connection::new();
        }
        store.check_invariants().unwrap();
    }
}
