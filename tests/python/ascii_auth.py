"""pymemcache against a server started with -Y, authenticating the way
memcached's documentation describes: a `set` of any key whose value is
"user password", then ordinary use on the same connection.

Usage: ascii_auth.py PORT USER PASSWORD
Prints "N passed, M failed" and exits non-zero on any failure.
"""
import sys

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    results = []

    def check(name, ok):
        results.append(ok)
        print("%s %s" % ("ok  " if ok else "FAIL", name))

    # noreply off: memcached answers the auth set even under noreply, but
    # pymemcache would not wait for the answer.
    bad = Client(("127.0.0.1", port), default_noreply=False)
    try:
        bad.get("k")
        check("an unauthenticated get is refused", False)
    except MemcacheClientError as e:
        check("an unauthenticated get is refused", b"unauthenticated" in str(e).encode())
    bad.close()

    wrong = Client(("127.0.0.1", port), default_noreply=False)
    try:
        wrong.set("auth", "%s %s-wrong" % (user, password))
        check("a wrong password is refused", False)
    except MemcacheClientError as e:
        check("a wrong password is refused", "authentication failure" in str(e))
    wrong.close()

    c = Client(("127.0.0.1", port), default_noreply=False)
    check("login with set", c.set("auth", "%s %s" % (user, password)) is True)
    check("login stored nothing", c.get("auth") is None)
    check("set", c.set("greeting", b"hello", expire=0) is True)
    check("get", c.get("greeting") == b"hello")
    check("add of an existing key", c.add("greeting", b"x") is False)
    check("set_many/get_many", not c.set_many({"a": b"1", "b": b"2"})
          and c.get_many(["a", "b", "none"]) == {"a": b"1", "b": b"2"})
    check("incr", c.incr("a", 41) == 42)
    check("decr", c.decr("a", 2) == 40)
    value, cas = c.gets("greeting")
    check("gets/cas", value == b"hello" and c.cas("greeting", b"bye", cas) is True)
    check("cas with a stale token", c.cas("greeting", b"no", cas) is False)
    check("append", c.append("greeting", b"!") and c.get("greeting") == b"bye!")
    check("touch", c.touch("greeting", 100) is True)
    check("delete", c.delete("greeting") is True and c.get("greeting") is None)
    check("version", c.version().startswith(b"1.6.18"))
    check("stats", int(c.stats()[b"auth_cmds"]) >= 2)
    c.close()

    failed = results.count(False)
    print("%d passed, %d failed" % (len(results) - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
