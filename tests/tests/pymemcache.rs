//! The seed article's patterns, with pymemcache, unchanged in spirit:
//! set/get, get-or-compute, expiry, FallbackClient warm migration across
//! two servers, the gets/cas visitor counter from several processes at
//! once (final count exact), incr/decr. Needs `.venv` with pymemcache
//! (`scripts/setup` creates it).

use wasmcached_tests::{run_python, start, Kind};

fn run_article(kind: Kind) {
    let a = start(kind, &[]);
    let b = start(kind, &[]);
    let args = [a.port.to_string(), b.port.to_string()];
    let text = run_python("article.py", &args, kind.name());
    assert!(text.contains("7 passed, 0 failed"));
}

#[test]
fn article_patterns_wasm() {
    run_article(Kind::Wasm);
}

#[test]
fn article_patterns_native() {
    run_article(Kind::Native);
}

#[test]
fn article_patterns_reference_memcached() {
    // The same script against memcached proves the checks themselves.
    run_article(Kind::Memcached);
}
