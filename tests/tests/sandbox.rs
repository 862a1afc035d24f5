//! The runner's least privilege, proven with a guest that tries everything
//! the server must not be able to do (tests/sandbox-probe).

use std::process::Command;

use wasmcached_tests::{bin_dir, build_sandbox_probe, free_port};

#[test]
fn guest_gets_only_its_listening_socket() {
    let probe = build_sandbox_probe();
    let runner = bin_dir().join("wasmcached");
    assert!(
        runner.exists(),
        "build the runner first (scripts/test does)"
    );
    let port = free_port();
    let out = Command::new(runner)
        .env("HOME", "/root")
        .env("SECRET_TOKEN", "must-not-leak")
        .args([
            "-p",
            &port.to_string(),
            "-l",
            "127.0.0.1",
            "-m",
            "8",
            "-I",
            "1m",
            "--component",
        ])
        .arg(&probe)
        .output()
        .expect("run the runner");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("probe printed nothing for {name}"))
            .to_string()
    };
    assert!(
        line("bind_configured").ends_with("allowed"),
        "the configured address must work"
    );
    for denied in [
        "bind_other_port",
        "bind_all_interfaces",
        "connect_out",
        "udp_bind",
        "name_lookup",
        "read_file",
        "list_dir",
        "environment",
        "allocate_1gib",
    ] {
        assert!(line(denied).contains("denied"), "{}", line(denied));
    }
}

#[test]
fn sasl_guest_gets_the_password_data_and_nothing_more() {
    let probe = build_sandbox_probe();
    let pwdb = std::env::temp_dir().join(format!("wasmcached-pwdb-{}", std::process::id()));
    std::fs::write(&pwdb, "alice:secret\n").expect("write");
    let out = Command::new(bin_dir().join("wasmcached"))
        .env("MEMCACHED_SASL_PWDB", &pwdb)
        .env("SECRET_TOKEN", "must-not-leak")
        .args(["-p", &free_port().to_string(), "-S", "--component"])
        .arg(&probe)
        .output()
        .expect("run the runner");
    let _ = std::fs::remove_file(&pwdb);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("sasl_pwdb: \"alice:secret\\n\""), "{text}");
    for denied in ["environment", "read_file", "list_dir"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{denied}: ")))
            .unwrap_or_else(|| panic!("probe printed nothing for {denied}"));
        assert!(line.contains("denied"), "{line}");
    }
}

#[test]
fn guest_trap_is_reported_with_an_error_exit() {
    let probe = build_sandbox_probe();
    let out = Command::new(bin_dir().join("wasmcached"))
        .args(["-p", &free_port().to_string(), "-F", "--component"])
        .arg(&probe)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{err}");
    assert!(err.starts_with("error: the server trapped"), "{err}");
}

#[test]
fn unloadable_component_is_a_clear_error() {
    let path = std::env::temp_dir().join(format!("wasmcached-bad-{}", std::process::id()));
    std::fs::write(&path, b"\0asm\x01\0\0\0").expect("write");
    let out = Command::new(bin_dir().join("wasmcached"))
        .args(["-p", &free_port().to_string(), "--component"])
        .arg(&path)
        .output()
        .expect("run");
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(70));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: loading"));
}

/// The runner's own TCP serves an IPv6 address too.
#[test]
fn guest_listens_on_an_ipv6_address() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("this host has no IPv6 loopback: nothing to test");
        return;
    }
    let port = free_port();
    let mut child = Command::new(bin_dir().join("wasmcached"))
        .args(["-p", &port.to_string(), "-l", "::1", "-m", "8"])
        .spawn()
        .expect("run the runner");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = loop {
        match TcpStream::connect(("::1", port)) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                let _ = child.kill();
                panic!("the guest never listened on [::1]:{port}: {e}");
            }
        }
    };
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"set k 0 0 2\r\nv6\r\nget k\r\n").unwrap();
    let want = b"STORED\r\nVALUE k 0 2\r\nv6\r\nEND\r\n";
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < want.len() {
        match conn.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got, want);
}
