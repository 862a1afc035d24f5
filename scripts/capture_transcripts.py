#!/usr/bin/env python3
"""Captures conformance transcripts from a real memcached 1.6.18.

Reads conformance/<suite>.cases (requests only), runs every case against a
fresh memcached started for it, and writes conformance/<suite>.transcript
with the exact reply bytes after each request. The transcripts are the
expectations every wasmcached host is tested against; regenerate them only
from the reference server:

    python3 scripts/capture_transcripts.py [suite ...]
"""
import os
import select
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "conformance")
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
from mcutil import start_memcached, stop  # noqa: E402


def unescape(s):
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        n = s[i + 1]
        if n == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
            continue
        if n == "{":
            close = s.index("}", i)
            out += s[close + 1].encode() * int(s[i + 2:close])
            i = close + 2
            continue
        out += {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}[n]
        i += 2
    return bytes(out)


def escape(b):
    out = []
    i = 0
    while i < len(b):
        c = b[i]
        ch = chr(c)
        run = 1
        while i + run < len(b) and b[i + run] == c:
            run += 1
        if run >= 32 and 0x20 <= c <= 0x7E and ch != "\\":
            out.append("\\{%d}%s" % (run, ch))
            i += run
            continue
        i += 1
        if ch == "\r":
            out.append("\\r")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\\":
            out.append("\\\\")
        elif 0x20 <= c <= 0x7E:
            out.append(ch)
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


def read_reply(sock, first_wait=0.25, idle=0.04):
    """Everything the server sends until it goes quiet; (bytes, closed)."""
    data = bytearray()
    deadline = first_wait
    while True:
        r, _, _ = select.select([sock], [], [], deadline)
        if not r:
            return bytes(data), False
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            # Closed with some of our request unread: the kernel resets.
            return bytes(data), True
        if not chunk:
            return bytes(data), True
        data += chunk
        deadline = idle


def text_step(conn, body):
    """A `>` line of a text suite: the request in escape notation."""
    if body.startswith(" "):
        body = body[1:]
    return ("send", conn, unescape(body), None)


def parse_cases(text, step=text_step):
    """The cases of a .cases file; `step(conn, rest)` reads what follows the
    `N>` of a request line into ("send", conn, bytes, comment or None)."""
    cases = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("=== "):
            cases.append({"name": line[4:].strip(), "opts": [], "steps": []})
        elif line.startswith("opts "):
            cases[-1]["opts"] = line[5:].split()
        elif line.startswith("sleep "):
            cases[-1]["steps"].append(("sleep", float(line[6:])))
        else:
            n = 0
            while line[n].isdigit():
                n += 1
            conn = int(line[:n]) if n else 1
            assert line[n] == ">", line
            cases[-1]["steps"].append(step(conn, line[n + 1:]))
    return cases


def server_opts(opts):
    """The case's options with -Y's file resolved from the repository's
    root, as every harness resolves it."""
    out = list(opts)
    for i, o in enumerate(out[:-1]):
        if o == "-Y":
            out[i + 1] = os.path.join(ROOT, out[i + 1])
    return out


def run_case(case, fmt=escape, env=None):
    """Runs a case against a fresh memcached; the transcript's lines, with
    requests and replies written by `fmt` and each step's comment (if any)
    above its request."""
    proc, port = start_memcached(server_opts(case["opts"]), env=env)
    out = ["=== " + case["name"]]
    if case["opts"]:
        out.append("opts " + " ".join(case["opts"]))
    socks = {}
    try:
        for step in case["steps"]:
            if step[0] == "sleep":
                time.sleep(step[1])
                out.append("sleep %d" % step[1])
                continue
            _, conn, req, comment = step
            if conn not in socks:
                socks[conn] = socket.create_connection(("127.0.0.1", port))
            s = socks[conn]
            if comment is not None:
                out.append("# " + comment)
            out.append("%d> %s" % (conn, fmt(req)))
            try:
                s.sendall(req)
            except OSError:
                pass
            reply, closed = read_reply(s)
            if reply:
                out.append("%d< %s" % (conn, fmt(reply)))
            if closed:
                out.append("%d! closed" % conn)
                s.close()
                del socks[conn]
    finally:
        for s in socks.values():
            s.close()
        stop(proc)
    return out


def captured_by(script):
    """The transcript's first line: which memcached and which script wrote
    it."""
    ver = subprocess.run(["memcached", "-V"], capture_output=True, text=True).stdout.strip()
    return "# Captured from %s by scripts/%s; do not edit." % (ver, script)


def write_transcript(suite, header, cases, fmt=escape, env=None):
    """Runs every case and writes conformance/<suite>.transcript: the
    `header` lines, then each case's lines followed by a blank line."""
    lines = list(header)
    for c in cases:
        lines += run_case(c, fmt, env)
        lines.append("")
    with open(os.path.join(DIR, suite + ".transcript"), "w") as f:
        f.write("\n".join(lines))
    print("%s: %d cases" % (suite, len(cases)))


def main():
    suites = sys.argv[1:] or sorted(
        f[:-6] for f in os.listdir(DIR) if f.endswith(".cases"))
    header = [captured_by("capture_transcripts.py")]
    for suite in suites:
        with open(os.path.join(DIR, suite + ".cases")) as f:
            cases = parse_cases(f.read())
        write_transcript(suite, header, cases)


if __name__ == "__main__":
    main()
