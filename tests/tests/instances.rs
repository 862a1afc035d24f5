//! `wasmcached --instances N` behind the two usual ways of spreading keys
//! over servers: pymemcache's `HashClient` (the seed article's patterns,
//! via the project's `.venv`) and twemproxy (`nutcracker`, with the config
//! committed in `conf/nutcracker.yml`). Also: each instance is a server of
//! its own (store, memory share, `stats`, port), the options are validated,
//! signals stop every instance and a trap in one ends the runner.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wasmcached_tests::instances::{free_ports, start_instances, Instances};
use wasmcached_tests::{
    bin_dir, build_sandbox_probe, free_port, parse_stats, repo_root, start, stat, venv_python,
    Client, Kind,
};

/// `curr_items` of every instance, from its own `stats`.
fn items_per_instance(inst: &Instances) -> Vec<u64> {
    inst.ports
        .iter()
        .map(|&p| {
            let reply = Client::connect(p).call(b"stats\r\n", b"END\r\n");
            stat(&parse_stats(&reply), "curr_items")
        })
        .collect()
}

/// Which instances hold `key` (by a direct `get` on each).
fn holders(inst: &Instances, key: &str) -> Vec<u16> {
    inst.ports
        .iter()
        .copied()
        .filter(|&p| {
            let reply = Client::connect(p).call(format!("get {key}\r\n").as_bytes(), b"END\r\n");
            reply.starts_with(b"VALUE ")
        })
        .collect()
}

#[test]
fn hash_client_spreads_the_article_over_instances() {
    let python = venv_python();
    let inst = start_instances(4, &[]);
    let old = start(Kind::Wasm, &[]);
    let out = Command::new(&python)
        .arg(repo_root().join("tests/python/hashing.py"))
        .arg(old.port.to_string())
        .args(inst.ports.iter().map(u16::to_string))
        .output()
        .expect("run python");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "HashClient checks failed");
    assert!(text.contains("8 passed, 0 failed"));
    let keys: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("keys: "))
        .and_then(|n| n.parse().ok())
        .expect("the script reports its keys");
    // The same spread, seen from this side: every instance holds some of
    // the keys and together they hold exactly the live ones.
    let items = items_per_instance(&inst);
    assert!(items.iter().all(|&n| n > 0), "{items:?}");
    assert_eq!(items.iter().sum::<u64>(), keys, "{items:?}");
}

/// Where Debian installs `nutcracker` (/usr/sbin, not always on PATH).
fn nutcracker() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("nutcracker"))
        .find(|p| p.is_file())
}

/// The committed config with its listen address and server list replaced:
/// every other setting (hashing, distribution, timeouts) is the one users
/// get from `conf/nutcracker.yml`.
fn nutcracker_conf(template: &str, listen: u16, ports: &[u16]) -> String {
    let mut out = String::new();
    let mut in_servers = false;
    for line in template.lines() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        if in_servers && body.starts_with("- ") {
            continue;
        }
        in_servers = false;
        if body.starts_with("listen:") {
            out += &format!("{indent}listen: 127.0.0.1:{listen}\n");
        } else if body == "servers:" {
            out += line;
            out += "\n";
            for (i, p) in ports.iter().enumerate() {
                out += &format!("{indent} - 127.0.0.1:{p}:1 wasmcached-{i}\n");
            }
            in_servers = true;
        } else {
            out += line;
            out += "\n";
        }
    }
    out
}

/// A running nutcracker, killed on drop.
struct Proxy {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_proxy(bin: &Path, ports: &[u16]) -> Proxy {
    let template = std::fs::read_to_string(repo_root().join("conf/nutcracker.yml"))
        .expect("conf/nutcracker.yml");
    for attempt in 0..5 {
        let dir =
            std::env::temp_dir().join(format!("wasmcached-nc-{}-{attempt}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (port, stats_port) = (free_port(), free_port());
        let conf = dir.join("nutcracker.yml");
        std::fs::write(&conf, nutcracker_conf(&template, port, ports)).expect("write conf");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .args(["-s", &stats_port.to_string(), "-a", "127.0.0.1"])
            .arg("-o")
            .arg(dir.join("nutcracker.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nutcracker");
        let mut proxy = Proxy { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = proxy.child.try_wait() {
                break;
            }
            if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                drop(s);
                let mut c = Client::connect(port);
                if c.call(b"get ready_probe\r\n", b"END\r\n") == b"END\r\n" {
                    return proxy;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = std::fs::read_to_string(proxy.dir.join("nutcracker.log")).unwrap_or_default();
        eprintln!("nutcracker did not start (attempt {attempt}):\n{log}");
    }
    panic!("nutcracker did not become ready");
}

#[test]
fn committed_nutcracker_conf_is_valid() {
    let Some(bin) = nutcracker_or_skip() else {
        return;
    };
    let out = Command::new(bin)
        .arg("-t")
        .arg("-c")
        .arg(repo_root().join("conf/nutcracker.yml"))
        .output()
        .expect("run nutcracker -t");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains("syntax is ok"),
        "{said}"
    );
}

/// nutcracker, or `None` with a note when it is not installed here. CI
/// installs it (scripts/setup), so there a missing proxy is a failure.
fn nutcracker_or_skip() -> Option<PathBuf> {
    let found = nutcracker();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "nutcracker is missing; scripts/setup installs it"
        );
        eprintln!(
            "SKIPPED: nutcracker (twemproxy) is not installed; scripts/setup installs it (apt-get install nutcracker)"
        );
    }
    found
}

#[test]
fn nutcracker_spreads_keys_over_instances() {
    let Some(bin) = nutcracker_or_skip() else {
        return;
    };
    let inst = start_instances(4, &[]);
    let proxy = start_proxy(&bin, &inst.ports);
    let mut c = Client::connect(proxy.port);
    let keys: Vec<String> = (0..200).map(|i| format!("user:{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        let v = format!("value-{i}");
        let req = format!("set {k} {i} 0 {}\r\n{v}\r\n", v.len());
        assert_eq!(c.call(req.as_bytes(), b"\r\n"), b"STORED\r\n", "{k}");
    }
    for (i, k) in keys.iter().enumerate() {
        let v = format!("value-{i}");
        let want = format!("VALUE {k} {i} {}\r\n{v}\r\nEND\r\n", v.len());
        assert_eq!(
            c.call(format!("get {k}\r\n").as_bytes(), b"END\r\n"),
            want.as_bytes()
        );
    }
    // A multiget spanning every instance: the proxy splits it and merges
    // the replies in the order asked.
    let some: Vec<&String> = keys.iter().step_by(2).take(50).collect();
    let mut req = String::from("get");
    let mut want = String::new();
    for k in &some {
        let i: usize = k["user:".len()..].parse().unwrap();
        let v = format!("value-{i}");
        req += &format!(" {k}");
        want += &format!("VALUE {k} {i} {}\r\n{v}\r\n", v.len());
    }
    req += " user:none\r\n";
    want += "END\r\n";
    assert_eq!(
        String::from_utf8_lossy(&c.call(req.as_bytes(), b"END\r\n")),
        want
    );
    for k in &keys[150..] {
        assert_eq!(
            c.call(format!("delete {k}\r\n").as_bytes(), b"\r\n"),
            b"DELETED\r\n"
        );
    }
    assert_eq!(c.call(b"set hits 0 0 1\r\n5\r\n", b"\r\n"), b"STORED\r\n");
    assert_eq!(c.call(b"incr hits 10\r\n", b"\r\n"), b"15\r\n");
    assert_eq!(c.call(b"decr hits 3\r\n", b"\r\n"), b"12\r\n");
    assert_eq!(c.call(b"incr nothing 1\r\n", b"\r\n"), b"NOT_FOUND\r\n");
    assert_eq!(
        c.call(b"get hits user:151\r\n", b"END\r\n"),
        b"VALUE hits 0 2\r\n12\r\nEND\r\n"
    );

    // Each live key on exactly one instance, every instance holding some,
    // and the instances' own counts adding up.
    let mut per: BTreeMap<u16, u64> = inst.ports.iter().map(|&p| (p, 0)).collect();
    let live: Vec<&str> = keys[..150]
        .iter()
        .map(String::as_str)
        .chain(["hits"])
        .collect();
    for k in &live {
        let h = holders(&inst, k);
        assert_eq!(h.len(), 1, "{k} is on {h:?}");
        *per.get_mut(&h[0]).unwrap() += 1;
    }
    for k in &keys[150..] {
        assert!(holders(&inst, k).is_empty(), "{k} was deleted");
    }
    let items = items_per_instance(&inst);
    eprintln!("keys per instance: {per:?}");
    assert!(items.iter().all(|&n| n > 0), "{items:?}");
    assert_eq!(items, per.values().copied().collect::<Vec<_>>());
    assert_eq!(items.iter().sum::<u64>(), live.len() as u64);
}

#[test]
fn instances_are_separate_servers() {
    let inst = start_instances(3, &["-m", "96"]);
    let mut a = Client::connect(inst.ports[0]);
    assert_eq!(a.call(b"set k 0 0 1\r\nx\r\n", b"\r\n"), b"STORED\r\n");
    let mut b = Client::connect(inst.ports[1]);
    assert_eq!(b.call(b"get k\r\n", b"END\r\n"), b"END\r\n");
    for (i, &p) in inst.ports.iter().enumerate() {
        let mut c = Client::connect(p);
        let stats = parse_stats(&c.call(b"stats\r\n", b"END\r\n"));
        assert_eq!(stat(&stats, "limit_maxbytes"), 32 << 20, "-m is split");
        assert_eq!(stat(&stats, "curr_items"), u64::from(i == 0));
        // Each instance counts only its own connections (the readiness
        // probe's, the two above on their instances, and this one).
        assert!(stat(&stats, "curr_connections") <= 3, "{stats:?}");
        let settings = parse_stats(&c.call(b"stats settings\r\n", b"END\r\n"));
        assert_eq!(stat(&settings, "tcpport"), u64::from(p));
    }
    let status = inst.server.terminate();
    assert!(status.success(), "{status:?}");
    for p in inst.ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", p)).is_err(),
            "port {p} still open after SIGTERM"
        );
    }
}

/// A client's `shutdown` (`-A`) to one instance ends the server, every
/// instance, as it ends memcached: serving on with a port gone would send
/// a hashing client's share of the keys to a closed port.
#[test]
fn shutdown_on_one_instance_stops_them_all() {
    let mut inst = start_instances(3, &["-A"]);
    let mut c = Client::connect(inst.ports[1]);
    c.send(b"shutdown\r\n");
    assert!(c.closed_within(Duration::from_secs(5)));
    // The instances live in the runner's process: it exiting closes them.
    let status = inst
        .server
        .wait_exit(Duration::from_secs(10))
        .expect("the runner still runs after shutdown");
    assert!(status.success(), "{status:?}");
}

/// `shutdown graceful` to one instance, with `-e`, is a graceful stop of
/// them all: every instance writes its own snapshot, then the runner
/// exits 0.
#[test]
fn shutdown_graceful_on_one_instance_snapshots_them_all() {
    let dir = std::env::temp_dir().join(format!("wasmcached-inst-graceful-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let snap = dir.join("snap");
    let mut inst = start_instances(3, &["-A", "-e", snap.to_str().unwrap()]);
    for (i, &p) in inst.ports.iter().enumerate() {
        let mut c = Client::connect(p);
        let set = format!("set k{i} 0 0 1\r\n{i}\r\n");
        assert_eq!(c.call(set.as_bytes(), b"\r\n"), b"STORED\r\n");
    }
    let mut c = Client::connect(inst.ports[2]);
    c.send(b"shutdown graceful\r\n");
    let status = inst
        .server
        .wait_exit(Duration::from_secs(10))
        .expect("the runner still runs after shutdown graceful");
    assert!(status.success(), "{status:?}");
    for (i, p) in inst.ports.iter().enumerate() {
        let file = dir.join(format!("snap.{p}"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let key = format!("k{i}");
        assert!(
            bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "{} lacks its instance's key",
            file.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-Y` with instances: every instance takes the users, and SIGHUP to the
/// runner reloads them in every instance.
#[test]
fn sighup_reloads_every_instances_users() {
    const STORED: &[u8] = b"STORED\r\n";
    const FAILED: &[u8] = b"CLIENT_ERROR authentication failure\r\n";
    let login = |port: u16, user: &str, pass: &str| {
        let value = format!("{user} {pass}");
        let req = format!("set auth 0 0 {}\r\n{value}\r\n", value.len());
        Client::connect(port).call(req.as_bytes(), b"\r\n")
    };
    let dir = std::env::temp_dir().join(format!("wasmcached-inst-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users");
    std::fs::write(&file, "alice:wonderland\n").unwrap();
    let inst = start_instances(3, &["-Y", file.to_str().unwrap()]);
    for &p in &inst.ports {
        assert_eq!(login(p, "alice", "wonderland"), STORED, "port {p}");
    }
    std::fs::write(&file, "carol:newpass\n").unwrap();
    // SAFETY: signalling the runner this test started.
    unsafe {
        libc::kill(inst.pid() as libc::pid_t, libc::SIGHUP);
    }
    for &p in &inst.ports {
        let deadline = Instant::now() + Duration::from_secs(10);
        while login(p, "carol", "newpass") != STORED {
            assert!(Instant::now() < deadline, "port {p} kept the old users");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(login(p, "alice", "wonderland"), FAILED, "port {p}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_instance_options_exit_64() {
    let port = free_port().to_string();
    for (args, says) in [
        (&["--instances", "0"][..], "not in 1..=64"),
        (&["--instances", "65"][..], "not in 1..=64"),
        (&["--instances", "2", "-p", "0"][..], "needs a fixed -p"),
        (
            &["--instances", "2", "-p", "65535"][..],
            "the last port is 65535",
        ),
        (
            &["--instances", "4", "-m", "3", "-p", &port][..],
            "less than 1 MB per instance",
        ),
    ] {
        let out = Command::new(bin_dir().join("wasmcached"))
            .args(args)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn each_instance_may_bind_only_its_own_port() {
    let probe = build_sandbox_probe();
    // Both probes report, then hold (-M) until killed: the runner would
    // end with the first instance that exits.
    let run = || {
        let mut child = Command::new(bin_dir().join("wasmcached"))
            .args(["-p", &free_ports(2).to_string(), "-m", "16", "-M"])
            .args(["--instances", "2", "--component"])
            .arg(&probe)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the runner");
        let out = BufReader::new(child.stdout.take().expect("piped"));
        let mut text = String::new();
        let mut holding = 0;
        for line in out.lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            holding += usize::from(line == "holding");
            if holding == 2 {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        text
    };
    // Another test may take a port between choosing and binding it.
    let mut text = run();
    for _ in 0..5 {
        if !text.contains("Address in use") {
            break;
        }
        text = run();
    }
    eprintln!("{text}");
    assert_eq!(text.matches("holding").count(), 2, "{text}");
    let lines = |name: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}: ")))
            .map(str::to_string)
            .collect()
    };
    // Each probe binds its own port, then tries the next one up: for the
    // first instance that is the second instance's port, still denied.
    let own = lines("bind_configured");
    assert_eq!(own.len(), 2, "{own:?}");
    assert!(own.iter().all(|l| l.ends_with("allowed")), "{own:?}");
    for denied in ["bind_other_port", "bind_all_interfaces", "connect_out"] {
        let l = lines(denied);
        assert_eq!(l.len(), 2, "{l:?}");
        assert!(l.iter().all(|l| l.contains("denied")), "{l:?}");
    }
}

#[test]
fn a_trap_in_one_instance_ends_the_runner() {
    let probe = build_sandbox_probe();
    let base = free_port();
    let out = Command::new(bin_dir().join("wasmcached"))
        .args(["-p", &base.to_string(), "-F", "--instances", "2"])
        .arg("--component")
        .arg(&probe)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{err}");
    assert!(
        err.starts_with("error: instance on 127.0.0.1:") && err.contains("the server trapped"),
        "{err}"
    );
}
