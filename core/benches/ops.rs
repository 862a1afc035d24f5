//! In-process cost of the common operations through the full protocol
//! path: bytes in, parse, execute, reply bytes out; text and binary
//! protocol side by side (`op/get_hit` and `op/bin_get_hit` do the same
//! work).
//!
//! `cargo bench -p wasmcached-core --bench ops`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use wasmcached_core::{Clock, Config, Connection, Progress, Store};

const CLOCK: Clock = Clock::new(0, 1_700_000_000);

fn setup(keys: usize) -> (Store, Connection) {
    let mut store = Store::new(
        Config {
            memory_limit: 1 << 30,
            ..Config::default()
        },
        CLOCK,
    );
    let mut conn = Connection::new();
    for i in 0..keys {
        conn.receive(format!("set key:{i:06} 0 0 64 noreply\r\n{}\r\n", "v".repeat(64)).as_bytes());
        let _ = conn.process(&mut store, CLOCK);
    }
    conn.receive(b"set counter 0 0 1 noreply\r\n0\r\n");
    let _ = conn.process(&mut store, CLOCK);
    (store, conn)
}

/// A binary request packet (see memcached's `protocol_binary.h`).
fn packet(opcode: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    p.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// Sends one request and drains its reply.
#[inline]
fn roundtrip(store: &mut Store, conn: &mut Connection, req: &[u8]) -> usize {
    conn.receive(req);
    let _ = conn.process(store, CLOCK);
    let n = conn.pending_output().len();
    conn.consume_output(n);
    n
}

/// Sends a pipeline of requests and drains every reply, calling `process`
/// as often as the per-call request budget (`-R`) makes necessary.
fn roundtrip_all(store: &mut Store, conn: &mut Connection, reqs: &[u8]) -> usize {
    conn.receive(reqs);
    let mut total = 0;
    loop {
        let p = conn.process(store, CLOCK);
        let n: usize = conn.output_chunks().map(<[u8]>::len).sum();
        conn.consume_output(n);
        total += n;
        if p != Progress::Yielded {
            return total;
        }
    }
}

fn bench(c: &mut Criterion) {
    let (mut store, mut conn) = setup(100_000);
    let mut g = c.benchmark_group("op");
    g.throughput(Throughput::Elements(1));
    g.bench_function("get_hit", |b| {
        b.iter(|| roundtrip(&mut store, &mut conn, b"get key:004242\r\n"))
    });
    g.bench_function("get_miss", |b| {
        b.iter(|| roundtrip(&mut store, &mut conn, b"get nokey:42\r\n"))
    });
    let set = format!("set key:001234 0 0 64\r\n{}\r\n", "w".repeat(64)).into_bytes();
    g.bench_function("set", |b| b.iter(|| roundtrip(&mut store, &mut conn, &set)));
    g.bench_function("incr", |b| {
        b.iter(|| roundtrip(&mut store, &mut conn, b"incr counter 1\r\n"))
    });
    g.bench_function("mg_hit", |b| {
        b.iter(|| roundtrip(&mut store, &mut conn, b"mg key:004242 v f c\r\n"))
    });
    binary_ops(&mut g, &mut store);
    let multi: String = std::iter::once("get".to_string())
        .chain((0..100).map(|i| format!(" key:{:06}", i * 997)))
        .chain(std::iter::once("\r\n".to_string()))
        .collect();
    g.bench_function("multiget_100", |b| {
        b.iter(|| roundtrip(&mut store, &mut conn, multi.as_bytes()))
    });
    g.finish();

    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("insert_10k_fresh", |b| {
        let reqs: Vec<Vec<u8>> = (0..10_000)
            .map(|i| format!("set k{i} 0 0 64 noreply\r\n{}\r\n", "v".repeat(64)).into_bytes())
            .collect();
        b.iter_batched(
            || (Store::new(Config::default(), CLOCK), Connection::new()),
            |(mut s, mut c)| {
                for r in &reqs {
                    roundtrip(&mut s, &mut c, r);
                }
                s.curr_items()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// The binary protocol's counterparts, on a connection of their own (its
/// first byte makes it binary).
fn binary_ops(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    store: &mut Store,
) {
    let mut conn = Connection::new();
    let get_hit = packet(0x00, b"key:004242", &[], &[]);
    g.bench_function("bin_get_hit", |b| {
        b.iter(|| roundtrip(store, &mut conn, &get_hit))
    });
    let get_miss = packet(0x00, b"nokey:42", &[], &[]);
    g.bench_function("bin_get_miss", |b| {
        b.iter(|| roundtrip(store, &mut conn, &get_miss))
    });
    let set = packet(0x01, b"key:001234", &[0; 8], &[b'w'; 64]);
    g.bench_function("bin_set", |b| b.iter(|| roundtrip(store, &mut conn, &set)));
    let mut incr_extras = 1u64.to_be_bytes().to_vec();
    incr_extras.extend_from_slice(&[0; 12]);
    let incr = packet(0x05, b"counter", &incr_extras, &[]);
    g.bench_function("bin_incr", |b| {
        b.iter(|| roundtrip(store, &mut conn, &incr))
    });
    // A multiget as binary clients send it: quiet getkq per key, then noop.
    let mut multi: Vec<u8> = (0..100)
        .flat_map(|i| packet(0x0d, format!("key:{:06}", i * 997).as_bytes(), &[], &[]))
        .collect();
    multi.extend_from_slice(&packet(0x0a, &[], &[], &[]));
    g.bench_function("bin_multiget_100", |b| {
        b.iter(|| roundtrip_all(store, &mut conn, &multi))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
