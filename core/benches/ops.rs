//! In-process cost of the common operations through the full protocol
//! path: bytes in, parse, execute, reply bytes out.
//!
//! `cargo bench -p wasmcached-core --bench ops`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use wasmcached_core::{Clock, Config, Connection, Store};

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

/// Sends one request and drains its reply.
#[inline]
fn roundtrip(store: &mut Store, conn: &mut Connection, req: &[u8]) -> usize {
    conn.receive(req);
    let _ = conn.process(store, CLOCK);
    let n = conn.pending_output().len();
    conn.consume_output(n);
    n
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

criterion_group!(benches, bench);
criterion_main!(benches);
