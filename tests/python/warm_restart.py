"""Warm restart seen by a pymemcache client.

Usage:
  warm_restart.py fill PORT STATE_FILE N   store N items, record what gets returns
  warm_restart.py check PORT STATE_FILE    every recorded item back, same CAS
  warm_restart.py empty PORT STATE_FILE    none of them back (a cold start)

`fill` stores items with assorted values, client flags and TTLs (one
batch with a 2-second TTL, which must be gone after a restart that
waited longer), reads a few (LRU order and fetched bits), and records
each item's value, flags and `gets` CAS value in STATE_FILE as JSON.
"""
import json
import sys

from pymemcache.client import base


def serde_with_flags():
    # Values come back as raw bytes with their flags, whatever the flags.
    class Raw:
        def serialize(self, key, value):
            return value[0], value[1]

        def deserialize(self, key, value, flags):
            return (value, flags)

    return Raw()


def client(port):
    return base.Client(("127.0.0.1", port), serde=serde_with_flags(), connect_timeout=5, timeout=10)


def fill(port, state_file, n):
    c = client(port)
    keys = []
    for i in range(n):
        key = "key:%d" % i
        value = (b"value-%d-" % i) * (1 + i % 7)
        flags = i % 5
        c.set(key, (value, flags), expire=0 if i % 3 else 3600)
        keys.append(key)
    for i in range(0, n, 10):
        c.get("key:%d" % i)
    short = ["short:%d" % i for i in range(20)]
    for key in short:
        c.set(key, (b"gone", 0), expire=2)
    state = {}
    for i in range(0, n, 500):
        batch = keys[i:i + 500]
        got = c.gets_many(batch)
        for key in batch:
            (value, flags), cas = got[key]
            state[key] = [value.decode(), flags, int(cas)]
    with open(state_file, "w") as f:
        json.dump({"items": state, "short": short}, f)
    print("filled %d" % len(state))


def check(port, state_file, expect_present):
    with open(state_file) as f:
        state = json.load(f)
    c = client(port)
    items = state["items"]
    keys = list(items)
    present = 0
    wrong = []
    for i in range(0, len(keys), 500):
        batch = keys[i:i + 500]
        got = c.gets_many(batch)
        for key in batch:
            if key not in got:
                continue
            present += 1
            (value, flags), cas = got[key]
            want = items[key]
            if [value.decode(), flags, int(cas)] != want:
                wrong.append((key, value, flags, cas, want))
    short = c.get_many(state["short"])
    print("%d of %d present, %d wrong, %d short-lived present" % (present, len(keys), len(wrong), len(short)))
    if expect_present:
        assert not wrong, wrong[:5]
        assert present == len(keys), present
        assert not short, short
        # The CAS counter continues: a new item gets a CAS above all old ones.
        c.set("after-restart", (b"x", 0))
        _, cas = c.gets("after-restart")
        assert int(cas) > max(v[2] for v in items.values()), cas
    else:
        assert present == 0, present


def main():
    mode, port, state_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "fill":
        fill(port, state_file, int(sys.argv[4]))
    elif mode == "check":
        check(port, state_file, True)
    elif mode == "empty":
        check(port, state_file, False)
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
