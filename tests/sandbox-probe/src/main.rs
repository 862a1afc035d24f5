//! Run by the sandbox test under the `wasmcached` runner in place of the
//! server. Receives the server's arguments, tries one capability per line
//! and prints `<name>: allowed` or `<name>: denied (<error>)`.

use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};

fn report<T, E: std::fmt::Display>(name: &str, r: Result<T, E>) -> Option<T> {
    match r {
        Ok(v) => {
            println!("{name}: allowed");
            Some(v)
        }
        Err(e) => {
            println!("{name}: denied ({e})");
            None
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let port: u16 = arg("-p").and_then(|p| p.parse().ok()).unwrap_or(0);
    // The trap test passes -F (a server flag with no meaning here) to ask
    // for a guest crash: `abort` is a wasm trap.
    if args.iter().any(|a| a == "-F") {
        println!("trapping");
        std::process::abort();
    }
    let ip = arg("-l").unwrap_or_else(|| "127.0.0.1".into());

    let listener = report("bind_configured", TcpListener::bind((ip.as_str(), port)));
    report(
        "bind_other_port",
        TcpListener::bind((ip.as_str(), port.wrapping_add(1))),
    );
    report("bind_all_interfaces", TcpListener::bind(("0.0.0.0", port)));
    report("connect_out", TcpStream::connect((ip.as_str(), port)));
    report("udp_bind", UdpSocket::bind("127.0.0.1:0"));
    report(
        "name_lookup",
        "localhost:80".to_socket_addrs().map(|a| a.count()),
    );
    report("read_file", std::fs::read("/etc/passwd"));
    report("list_dir", std::fs::read_dir("."));
    // With -S the runner passes the password file's content, and only it.
    if let Ok(pwdb) = std::env::var("WASMCACHED_SASL_PWDB_DATA") {
        println!("sasl_pwdb: {pwdb:?}");
    }
    let inherited: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k != "WASMCACHED_PID" && k != "WASMCACHED_SASL_PWDB_DATA")
        .collect();
    report(
        "environment",
        if inherited.is_empty() {
            Err("nothing inherited".to_string())
        } else {
            Ok(inherited)
        },
    );
    let mut big: Vec<u8> = Vec::new();
    report(
        "allocate_1gib",
        big.try_reserve_exact(1 << 30).map_err(|e| e.to_string()),
    );
    drop(listener);
    // -M (another server flag with no meaning here) keeps the probe up
    // until the runner is stopped: a runner of several instances ends when
    // the first one does.
    if args.iter().any(|a| a == "-M") {
        println!("holding");
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
