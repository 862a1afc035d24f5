#!/usr/bin/env python3
"""Captures binary-protocol conformance transcripts from memcached 1.6.18.

Reads conformance/binary.cases, where each request is written in a small
packet language (below), runs every case against a fresh memcached started
for it, and writes conformance/binary.transcript: the exact request and
reply bytes of every step, in hex, one packet per field group, with the
request's source line as a comment. Regenerate only from the reference
server:

    python3 scripts/capture_binary_transcripts.py [case ...]

With case names, prints those cases' transcripts instead of writing.

Packet language (one step per `>` line; `;` separates packets sent in one
write):

    > get key='foo' opaque=7
    > set key='k' flags=5 exp=0 value='hello' cas=0
    > incr key='n' delta=1 initial=10 exp=0
    > raw '80 0a 0000 ...'          bytes given in hex
    > text 'get foo\\r\\n'           bytes in the transcript escape notation
    > [0:30] set key='k' value='x'  only bytes 0..30 of the step (0: to
                                    the end) are sent

Opcodes are named (get, setq, sasl_auth, ...) or given as 0xNN. Fields:
key, value (escape notation, `\\{N}c` repeats c N times), extras (hex,
replaces the defaults), flags/exp (set, add, replace), exp (touch, gat,
flush), delta/initial/exp (incr, decr), cas, opaque, vbucket, datatype,
magic, and keylen/extlen/bodylen to override the computed lengths.

SASL cases (`opts -S`) run memcached with a Cyrus SASL configuration
(mech_list: plain) and a sasldb holding the users in SASL_USERS;
Debian's memcached is not built with MEMCACHED_SASL_PWDB support, so the
same users are written to a pwdb file too, for servers that read it.
Needs saslpasswd2 (Debian: sasl2-bin).
"""
import os
import shlex
import socket
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "conformance")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from capture_transcripts import (  # noqa: E402
    captured_by, escape, parse_cases, run_case, unescape, write_transcript)

# The users every `-S` case can authenticate as (user, password). The core's
# transcript harness configures the same ones.
SASL_USERS = [("testuser", "testpass"), ("other", "secret")]

OPCODES = {
    "get": 0x00, "set": 0x01, "add": 0x02, "replace": 0x03, "delete": 0x04,
    "incr": 0x05, "decr": 0x06, "quit": 0x07, "flush": 0x08, "getq": 0x09,
    "noop": 0x0A, "version": 0x0B, "getk": 0x0C, "getkq": 0x0D,
    "append": 0x0E, "prepend": 0x0F, "stat": 0x10, "setq": 0x11,
    "addq": 0x12, "replaceq": 0x13, "deleteq": 0x14, "incrq": 0x15,
    "decrq": 0x16, "quitq": 0x17, "flushq": 0x18, "appendq": 0x19,
    "prependq": 0x1A, "verbosity": 0x1B, "touch": 0x1C, "gat": 0x1D,
    "gatq": 0x1E, "sasl_list": 0x20, "sasl_auth": 0x21, "sasl_step": 0x22,
    "gatk": 0x23, "gatkq": 0x24, "rget": 0x30,
}
STORE_OPS = {0x01, 0x02, 0x03, 0x11, 0x12, 0x13}
TOUCH_OPS = {0x1C, 0x1D, 0x1E, 0x23, 0x24}
INCR_OPS = {0x05, 0x06, 0x15, 0x16}
FLUSH_OPS = {0x08, 0x18}
HEADER = struct.Struct(">BBHBBHIIQ")


def num(s):
    return int(s, 0)


def unhex(s):
    s = "".join(s.split()).replace("|", "")
    return bytes.fromhex(s)


def build_packet(tokens):
    """One request packet from `opcode field=value ...` tokens."""
    op = tokens[0]
    if op == "raw":
        return unhex(tokens[1])
    if op == "text":
        return unescape(tokens[1])
    opcode = OPCODES[op] if op in OPCODES else num(op)
    f = {}
    for t in tokens[1:]:
        k, _, v = t.partition("=")
        f[k] = v
    key = unescape(f.get("key", ""))
    value = unescape(f.get("value", ""))
    if "extras" in f:
        extras = unhex(f["extras"])
    elif opcode in STORE_OPS:
        extras = struct.pack(">II", num(f.get("flags", "0")), num(f.get("exp", "0")) & 0xFFFFFFFF)
    elif opcode in TOUCH_OPS:
        extras = struct.pack(">I", num(f.get("exp", "0")) & 0xFFFFFFFF)
    elif opcode in INCR_OPS:
        extras = struct.pack(">QQI", num(f.get("delta", "1")), num(f.get("initial", "0")),
                             num(f.get("exp", "0")) & 0xFFFFFFFF)
    elif opcode in FLUSH_OPS and "exp" in f:
        extras = struct.pack(">I", num(f["exp"]) & 0xFFFFFFFF)
    else:
        extras = b""
    header = HEADER.pack(
        num(f.get("magic", "0x80")), opcode,
        num(f["keylen"]) if "keylen" in f else len(key),
        num(f["extlen"]) if "extlen" in f else len(extras),
        num(f.get("datatype", "0")), num(f.get("vbucket", "0")),
        num(f["bodylen"]) if "bodylen" in f else len(key) + len(extras) + len(value),
        num(f.get("opaque", "0")), num(f.get("cas", "0")))
    return header + extras + key + value


def build_step(line):
    """The bytes one `>` line sends."""
    cut = None
    if line.startswith("["):
        close = line.index("]")
        a, _, b = line[1:close].partition(":")
        cut = (int(a or 0), int(b or 0))
        line = line[close + 1:]
    out = b""
    packet = []
    for tok in shlex.split(line) + [";"]:
        if tok == ";":
            if packet:
                out += build_packet(packet)
            packet = []
        else:
            packet.append(tok)
    if cut:
        out = out[cut[0]:cut[1] or len(out)]
    return out


def quoted(b):
    return '"' + escape(b).replace('"', "\\x22") + '"'


def field(b):
    """Bytes as a quoted string when mostly printable, else hex."""
    if not b:
        return ""
    printable = sum(1 for c in b if 0x20 <= c < 0x7F or c in (9, 10, 13))
    if printable * 10 >= len(b) * 9:
        return quoted(b)
    return b.hex()


def fmt_packets(data):
    """Bytes as hex packets: header fields grouped, then extras, key, value.
    Whatever does not parse as a packet is written as one quoted string."""
    parts = []
    i = 0
    while i < len(data):
        if len(data) - i < 24 or data[i] not in (0x80, 0x81):
            parts.append(field(data[i:]) or '""')
            break
        h = data[i:i + 24]
        magic, op, klen, elen, dt, st, blen, opaque, cas = HEADER.unpack(h)
        body = data[i + 24:i + 24 + blen]
        hdr = "%02x %02x %04x %02x %02x %04x %08x %08x %016x" % (
            magic, op, klen, elen, dt, st, blen, opaque, cas)
        segs = [hdr]
        if len(body) < blen or elen + klen > blen:
            segs.append(field(body))
        else:
            ext, key, val = body[:elen], body[elen:elen + klen], body[elen + klen:]
            segs += [x for x in (ext.hex(), field(key), field(val)) if x]
        parts.append(" | ".join(segs))
        i += 24 + len(body)
    return " ; ".join(parts)


def binary_step(conn, rest):
    """A `>` line of binary.cases: the packets it builds, and its source
    line as the comment."""
    src = rest.strip()
    return ("send", conn, build_step(src), src)


def sasl_env(tmp):
    """A Cyrus SASL setup for memcached -S: PLAIN only, users in a sasldb."""
    db = os.path.join(tmp, "sasldb2")
    with open(os.path.join(tmp, "memcached.conf"), "w") as f:
        f.write("mech_list: plain\nsasldb_path: %s\n" % db)
    realm = socket.gethostname()
    pwdb = os.path.join(tmp, "pwdb")
    with open(pwdb, "w") as f:
        for user, pw in SASL_USERS:
            subprocess.run(["saslpasswd2", "-p", "-a", "memcached", "-c", "-f", db,
                            "-u", realm, user], input=pw.encode(), check=True)
            f.write("%s:%s\n" % (user, pw))
    return dict(os.environ, SASL_CONF_PATH=tmp, MEMCACHED_SASL_PWDB=pwdb)


def main():
    suite = "binary"
    with open(os.path.join(DIR, suite + ".cases")) as f:
        cases = parse_cases(f.read(), binary_step)
    if len(sys.argv) > 1:
        # Explore: print the named cases' transcripts, write nothing.
        with tempfile.TemporaryDirectory() as tmp:
            env = sasl_env(tmp)
            for c in cases:
                if c["name"] in sys.argv[1:]:
                    print("\n".join(run_case(c, fmt_packets, env)))
        return
    header = [captured_by("capture_binary_transcripts.py"),
              "# Steps are hex: header fields | extras | key | value; ';' between packets.",
              "format hex", ""]
    with tempfile.TemporaryDirectory() as tmp:
        write_transcript(suite, header, cases, fmt_packets, sasl_env(tmp))


if __name__ == "__main__":
    main()
