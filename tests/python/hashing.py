"""The seed article's pymemcache patterns through a HashClient spreading
keys over several servers (`wasmcached --instances N`), plus a migration
from a single server to the pool with FallbackClient.

Usage: hashing.py OLD_PORT PORT...

OLD_PORT is a separate single server (the cache being migrated from); the
PORTs are the pool. Exits non-zero (with a traceback) on the first failed
check. Prints `keys: N` (the live keys it left in the pool) before the
summary line, for the caller's own check of per-server `stats`.
"""
import functools
import sys

from pymemcache.client import base
from pymemcache.client.hash import HashClient

from article import (check_cas_counter, check_expiry, check_fallback,
                     check_get_or_compute, check_incr_decr, check_set_get)


def pool(ports):
    """A factory of HashClients over `ports`."""
    # noreply off: every storage command is checked, as with base.Client.
    return functools.partial(HashClient, [("127.0.0.1", p) for p in ports], default_noreply=False)


def check_many(ports):
    client = pool(ports)()
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
    client = pool(ports)()
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
    connect = pool(ports)
    checks = [
        ("set/get", lambda: check_set_get(connect)),
        ("get-or-compute", lambda: check_get_or_compute(connect)),
        ("expiry", lambda: check_expiry(connect)),
        ("FallbackClient migration to the pool", lambda: check_fallback(old, connect)),
        ("gets/cas counter, 4 processes", lambda: check_cas_counter(connect)),
        ("incr/decr", lambda: check_incr_decr(connect)),
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
