"""Real binary-protocol clients against one server.

Usage:
    binary_clients.py plain PORT            pylibmc (libmemcached, binary=True)
                                            and bmemcached, no authentication
    binary_clients.py sasl PORT USER PASS   bmemcached authenticating with SASL
                                            PLAIN against -S; wrong and missing
                                            credentials refused

pylibmc 1.6.3 on libmemcached 1.1.4 cannot authenticate (its SASL client
fails before sending anything, against memcached too), so the SASL checks
use bmemcached; libmemcached's tools (memcstat --username) do work
and are run by the Rust test.

Exits non-zero (with a traceback) on the first failed check; prints
"N passed, 0 failed" otherwise.
"""
import multiprocessing
import sys

import bmemcached
import pylibmc


def refused(fn, *args):
    """Whether a pylibmc call failed: it returns False or raises."""
    try:
        return not fn(*args)
    except pylibmc.Error:
        return True


def pylibmc_client(port, user=None, password=None):
    kwargs = {"binary": True, "behaviors": {"cas": True, "tcp_nodelay": True}}
    if user is not None:
        kwargs.update(username=user, password=password)
    return pylibmc.Client(["127.0.0.1:%d" % port], **kwargs)


def bmemcached_client(port, user=None, password=None):
    return bmemcached.Client(["127.0.0.1:%d" % port], user, password)


def check_pylibmc_basics(port, auth):
    mc = pylibmc_client(port, *auth)
    mc.flush_all()
    assert mc.set("k", "v")
    assert mc.get("k") == "v"
    assert mc.set("flags", 12345)
    assert mc.get("flags") == 12345
    assert refused(mc.add, "k", "other")
    assert mc.add("fresh", "a")
    assert mc.replace("k", "v2")
    assert refused(mc.replace, "missing", "x")
    assert mc.append("k", "+tail")
    assert mc.prepend("k", "head+")
    assert mc.get("k") == "head+v2+tail"
    assert mc.delete("k")
    assert refused(mc.delete, "k")
    assert mc.get("k") is None
    assert mc.touch("fresh", 100)


def check_pylibmc_counters_and_cas(port, auth):
    mc = pylibmc_client(port, *auth)
    mc.set("n", "10")
    assert mc.incr("n", 5) == 15
    assert mc.decr("n", 100) == 0
    try:
        mc.incr("nope")
        raise AssertionError("incr of a missing key succeeded")
    except pylibmc.NotFound:
        pass
    value, cas = mc.gets("n")
    assert value.strip() == "0" and cas  # decr pads in place, as memcached
    assert mc.cas("n", "7", cas)
    assert refused(mc.cas, "n", "8", cas)
    assert mc.get("n") == "7"


def check_pylibmc_multi(port, auth):
    # set_multi and get_multi pipeline quiet requests ended by a noop.
    mc = pylibmc_client(port, *auth)
    items = {"m%d" % i: "v%d" % i for i in range(200)}
    assert mc.set_multi(items) == []
    got = mc.get_multi(["m%d" % i for i in range(0, 250)])
    assert len(got) == 200 and got["m7"] == "v7" and "m220" not in got
    assert mc.delete_multi(["m%d" % i for i in range(100)])
    assert len(mc.get_multi(["m%d" % i for i in range(200)])) == 100
    big = "x" * 500000
    assert mc.set("big", big)
    assert mc.get("big") == big
    stats = mc.get_stats()
    assert stats and stats[0][1]["version"] == b"1.6.18", stats


def visit(port, auth, visits):
    mc = pylibmc_client(port, *auth)
    for _ in range(visits):
        while True:
            value, cas = mc.gets("visitors")
            if value is None:
                if mc.add("visitors", "1"):
                    break
                continue
            if mc.cas("visitors", str(int(value) + 1), cas):
                break


def check_pylibmc_cas_counter(port, auth):
    # Four processes count 100 visits through gets/cas: none may be lost.
    mc = pylibmc_client(port, *auth)
    mc.delete("visitors")
    procs = [multiprocessing.Process(target=visit, args=(port, auth, 25)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert mc.get("visitors") == "100", mc.get("visitors")


def check_bmemcached(port, auth):
    mc = bmemcached_client(port, *auth)
    assert mc.set("b", "binary")
    assert mc.get("b") == "binary"
    assert mc.set_multi({"b1": 1, "b2": "two"}) is not False
    assert mc.get_multi(["b1", "b2", "missing"]) == {"b1": 1, "b2": "two"}
    # A missing counter is created at the default (the initial value).
    assert mc.incr("cnt", 1, default=10) == 10
    assert mc.incr("cnt", 1) == 11
    assert mc.decr("cnt", 20) == 0
    value, cas = mc.gets("b")
    assert value == "binary"
    assert mc.cas("b", "swapped", cas)
    assert mc.get("b") == "swapped"
    assert mc.delete("b")
    (stats,) = mc.stats().values()
    assert stats["version"] == b"1.6.18", stats


def check_bmemcached_storage(port, auth):
    mc = bmemcached_client(port, *auth)
    assert mc.set("s", "one", time=100)
    assert not mc.add("s", "two")
    assert mc.add("s2", "two")
    assert mc.replace("s2", "three")
    assert not mc.replace("missing", "x")
    assert mc.get("s2") == "three"
    assert mc.delete("s2")
    assert mc.get("s2") is None
    big = "y" * 300000
    assert mc.set("big", big)
    assert mc.get("big") == big


def check_sasl_rejects(port, user, password):
    # Wrong credentials: nothing works.
    bad = bmemcached_client(port, user, password + "x")
    try:
        ok = bad.set("denied", "x")
    except bmemcached.exceptions.MemcachedException:
        ok = False
    assert not ok, "a wrong password could write"
    # No credentials at all: memcached answers an auth error and hangs up.
    anon = pylibmc_client(port)
    assert refused(anon.set, "denied", "x"), "an unauthenticated client could write"
    anon = bmemcached_client(port)
    try:
        ok = anon.set("denied", "x")
    except bmemcached.exceptions.MemcachedException:
        ok = False
    assert not ok, "an unauthenticated client could write"
    assert bmemcached_client(port, user, password).get("denied") is None


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    auth = tuple(sys.argv[3:5]) if mode == "sasl" else (None, None)
    checks = [
        ("bmemcached: set/get, multi, incr, cas, stats", lambda: check_bmemcached(port, auth)),
        ("bmemcached: add/replace/delete, 300 KB value", lambda: check_bmemcached_storage(port, auth)),
    ]
    if mode == "sasl":
        checks.append(("SASL: wrong or missing credentials refused", lambda: check_sasl_rejects(port, *auth)))
    else:
        checks += [
            ("pylibmc binary: storage, append/prepend, delete, touch", lambda: check_pylibmc_basics(port, auth)),
            ("pylibmc binary: incr/decr, gets/cas", lambda: check_pylibmc_counters_and_cas(port, auth)),
            ("pylibmc binary: multi get/set/delete, 500 KB value, stats", lambda: check_pylibmc_multi(port, auth)),
            ("pylibmc binary: gets/cas counter, 4 processes", lambda: check_pylibmc_cas_counter(port, auth)),
        ]
    for name, fn in checks:
        fn()
        print("ok", name)
    print("%d passed, 0 failed" % len(checks))


if __name__ == "__main__":
    main()
