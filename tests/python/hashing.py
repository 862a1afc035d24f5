"""The seed article's pymemcache patterns through a HashClient spreading
keys over several servers (`wasmcached --instances N`), plus a migration
from a single server to the pool with FallbackClient.

Usage: hashing.py OLD_PORT PORT...

OLD_PORT is a separate single server (the cache being migrated from); the
PORTs are the pool. Exits non-zero (with a traceback) on the first failed
check. Prints `keys: N` (the live keys it left in the pool) before the
summary line, for the caller's own check of per-server `stats`.
"""
import multiprocessing
import sys
import time

from pymemcache import fallback
from pymemcache.client import base
from pymemcache.client.hash import HashClient


def do_some_query():
    return 42


def pool(ports):
    # noreply off: every storage command is checked, as with base.Client.
    return HashClient([("127.0.0.1", p) for p in ports], default_noreply=False)


def check_set_get(ports):
    client = pool(ports)
    client.set("some_key", "some value")
    assert client.get("some_key") == b"some value"


def check_get_or_compute(ports):
    client = pool(ports)
    queries = 0
    for _ in range(3):
        result = client.get("cc_key")
        if result is None:
            queries += 1
            result = do_some_query()
            client.set("cc_key", result)
        assert int(result) == 42
    assert queries == 1, queries


def check_expiry(ports):
    client = pool(ports)
    client.set("short", "lived", expire=1)
    assert client.get("short") == b"lived"
    deadline = time.monotonic() + 5
    while client.get("short") is not None:
        assert time.monotonic() < deadline, "item did not expire"
        time.sleep(0.1)
    client.set("long", "lived", expire=100)
    assert client.get("long") == b"lived"


def check_fallback(old_port, ports):
    old_cache = base.Client(("127.0.0.1", old_port), ignore_exc=True)
    new_cache = pool(ports)
    old_cache.set("warm_key", "from old")
    client = fallback.FallbackClient((new_cache, old_cache))
    assert client.get("warm_key") == b"from old"
    client.set("fresh_key", "written new")
    assert new_cache.get("fresh_key") == b"written new"
    assert old_cache.get("fresh_key") is None
    result = client.get("missing_everywhere")
    if result is None:
        result = do_some_query()
        client.set("missing_everywhere", result)
    assert new_cache.get("missing_everywhere") == b"42"


def on_visit(client):
    while True:
        result, cas = client.gets("visitors")
        if result is None:
            result = 1
        else:
            result = int(result) + 1
        if cas is None:
            if client.add("visitors", result, noreply=False):
                break
            continue
        if client.cas("visitors", result, cas):
            break


def visitor(args):
    ports, visits = args
    client = pool(ports)
    for _ in range(visits):
        on_visit(client)
    return visits


def check_cas_counter(ports, procs=4, visits=250):
    with multiprocessing.Pool(procs) as workers:
        done = sum(workers.map(visitor, [(ports, visits)] * procs))
    client = pool(ports)
    assert int(client.get("visitors")) == done == procs * visits, client.get("visitors")


def check_incr_decr(ports):
    client = pool(ports)
    client.set("counter", "10")
    assert client.incr("counter", 5) == 15
    assert client.decr("counter", 20) == 0
    assert client.incr("nope", 1) is None
    client.set("text", "abc")
    try:
        client.incr("text", 1)
    except Exception as e:  # pymemcache maps CLIENT_ERROR to MemcacheClientError
        assert "non-numeric" in str(e), e
    else:
        raise AssertionError("incr on text must fail")


def check_many(ports):
    client = pool(ports)
    client.set_many({"m%d" % i: "v%d" % i for i in range(1000)})
    got = client.get_many(["m%d" % i for i in range(1000)])
    assert len(got) == 1000 and got["m7"] == b"v7"
    client.delete_many(["m%d" % i for i in range(500, 1000)])
    assert client.get_many(["m%d" % i for i in range(500, 1000)]) == {}


# The keys the checks above leave in the pool ("short" has expired and
# "missing_everywhere"'s miss was filled; the deleted m500..m999 are gone).
LIVE = ["some_key", "cc_key", "long", "fresh_key", "missing_everywhere",
        "visitors", "counter", "text"] + ["m%d" % i for i in range(500)]


def check_each_key_on_one_server(ports):
    """Every live key is on exactly the server the hash picks, on no other,
    and every server holds some of them."""
    client = pool(ports)
    direct = {p: base.Client(("127.0.0.1", p)) for p in ports}
    per_server = {p: 0 for p in ports}
    for key in LIVE:
        holders = [p for p, c in direct.items() if c.get(key) is not None]
        assert len(holders) == 1, (key, holders)
        assert client.hasher.get_node(key) == "127.0.0.1:%d" % holders[0], key
        per_server[holders[0]] += 1
    assert all(n > 0 for n in per_server.values()), per_server
    items = {p: c.stats()[b"curr_items"] for p, c in direct.items()}
    assert sum(items.values()) == len(LIVE), (items, len(LIVE))
    assert items == per_server, (items, per_server)
    print("per server:", " ".join("%d=%d" % kv for kv in sorted(per_server.items())))


def main():
    old = int(sys.argv[1])
    ports = [int(p) for p in sys.argv[2:]]
    checks = [
        ("set/get", lambda: check_set_get(ports)),
        ("get-or-compute", lambda: check_get_or_compute(ports)),
        ("expiry", lambda: check_expiry(ports)),
        ("FallbackClient migration to the pool", lambda: check_fallback(old, ports)),
        ("gets/cas counter, 4 processes", lambda: check_cas_counter(ports)),
        ("incr/decr", lambda: check_incr_decr(ports)),
        ("set_many/get_many/delete_many", lambda: check_many(ports)),
        ("each key on exactly one server", lambda: check_each_key_on_one_server(ports)),
    ]
    for name, fn in checks:
        fn()
        print("ok", name)
    print("keys: %d" % len(LIVE))
    print("%d passed, 0 failed" % len(checks))


if __name__ == "__main__":
    main()
