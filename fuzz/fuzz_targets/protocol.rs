//! Fuzzes the parser and store together: arbitrary bytes, split into
//! chunks by the input itself, fed to two connections sharing one small
//! store, with time advancing. Asserts the store's invariants and that a
//! connection never buffers beyond its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmcached_core::{Clock, Config, Connection, Progress, Store};

fuzz_target!(|data: &[u8]| {
    let cfg = Config {
        memory_limit: 16 * 1024,
        item_size_max: 4096,
        output_high_water: 8192,
        ..Config::default()
    };
    let mut clock = Clock::new(0, 1_700_000_000);
    let mut store = Store::new(cfg, clock);
    let mut conns = [Connection::new(), Connection::new()];
    let mut rest = data;
    while let Some((&ctl, tail)) = rest.split_first() {
        let len = usize::from(ctl & 0x3f).min(tail.len());
        let (chunk, tail) = tail.split_at(len);
        rest = tail;
        let conn = &mut conns[usize::from(ctl >> 7)];
        if ctl & 0x40 != 0 {
            clock = clock.advanced_ms(700);
            let _ = store.handle_timeout(clock);
        }
        conn.receive(chunk);
        for _ in 0..64 {
            let p = conn.process(&mut store, clock);
            let n: usize = conn.output_chunks().map(<[u8]>::len).sum();
            conn.consume_output(n);
            if matches!(p, Progress::NeedInput | Progress::Close) {
                break;
            }
        }
        if conn.is_closing() {
            *conn = Connection::new();
        }
        if let Err(e) = store.check_invariants() {
            panic!("invariant broken: {e}");
        }
    }
});
