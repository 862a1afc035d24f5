"""The seed article's pymemcache patterns, run against two servers.

Usage: article.py PORT_A PORT_B

Exits non-zero (with a traceback) on the first failed check. PORT_B is a
second, separate server used as the "new" cache in the FallbackClient
migration.

The checks take `connect`, a picklable factory of clients (see `client_for`),
so that hashing.py runs the same patterns through a HashClient pool.
"""
import functools
import multiprocessing
import sys
import time

from pymemcache import fallback
from pymemcache.client import base


def do_some_query():
    return 42


def client_for(port):
    """A factory of plain clients of the server on `port`."""
    return functools.partial(base.Client, ("127.0.0.1", port))


def check_set_get(connect):
    client = connect()
    client.set("some_key", "some value")
    assert client.get("some_key") == b"some value"


def check_get_or_compute(connect):
    client = connect()
    client.delete("cc_key")
    queries = 0
    for _ in range(3):
        result = client.get("cc_key")
        if result is None:
            queries += 1
            result = do_some_query()
            client.set("cc_key", result)
        assert int(result) == 42
    assert queries == 1, queries


def check_expiry(connect):
    client = connect()
    client.set("short", "lived", expire=1)
    assert client.get("short") == b"lived"
    deadline = time.monotonic() + 5
    while client.get("short") is not None:
        assert time.monotonic() < deadline, "item did not expire"
        time.sleep(0.1)
    client.set("long", "lived", expire=100)
    assert client.get("long") == b"lived"


def check_fallback(old_port, connect_new):
    old_cache = base.Client(("127.0.0.1", old_port), ignore_exc=True)
    new_cache = connect_new()
    old_cache.set("warm_key", "from old")
    new_cache.delete("warm_key")
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
    connect, visits = args
    client = connect()
    for _ in range(visits):
        on_visit(client)
    return visits


def check_cas_counter(connect, procs=4, visits=250):
    client = connect()
    client.delete("visitors")
    with multiprocessing.Pool(procs) as pool:
        done = sum(pool.map(visitor, [(connect, visits)] * procs))
    assert int(client.get("visitors")) == done == procs * visits, client.get("visitors")


def check_incr_decr(connect):
    client = connect()
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


def check_many_and_stats(connect):
    client = connect()
    client.set_many({"m%d" % i: "v%d" % i for i in range(100)})
    got = client.get_many(["m%d" % i for i in range(100)])
    assert len(got) == 100 and got["m7"] == b"v7"
    stats = client.stats()
    assert stats[b"curr_items"] >= 100
    assert stats[b"version"] == b"1.6.18"
    assert client.version() == b"1.6.18"


def main():
    port_a, port_b = int(sys.argv[1]), int(sys.argv[2])
    a, b = client_for(port_a), client_for(port_b)
    checks = [
        ("set/get", lambda: check_set_get(a)),
        ("get-or-compute", lambda: check_get_or_compute(a)),
        ("expiry", lambda: check_expiry(a)),
        ("FallbackClient migration", lambda: check_fallback(port_a, b)),
        ("gets/cas counter, 4 processes", lambda: check_cas_counter(a)),
        ("incr/decr", lambda: check_incr_decr(a)),
        ("get_many/stats", lambda: check_many_and_stats(a)),
    ]
    for name, fn in checks:
        fn()
        print("ok", name)
    print("%d passed, 0 failed" % len(checks))


if __name__ == "__main__":
    main()
