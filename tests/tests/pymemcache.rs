//! The seed article's patterns, with pymemcache, unchanged in spirit:
//! set/get, get-or-compute, expiry, FallbackClient warm migration across
//! two servers, the gets/cas visitor counter from several processes at
//! once (final count exact), incr/decr. Needs `.venv` with pymemcache
//! (`scripts/setup` creates it).

use std::path::PathBuf;
use std::process::Command;

use wasmcached_tests::{start, Kind};

fn run_article(kind: Kind) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/setup",
        python.display()
    );
    let a = start(kind, &[]);
    let b = start(kind, &[]);
    let out = Command::new(&python)
        .arg(root.join("tests/python/article.py"))
        .args([a.port.to_string(), b.port.to_string()])
        .output()
        .expect("run python");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{}:\n{text}{}",
        kind.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "article checks failed against {}",
        kind.name()
    );
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
