"""Starting and stopping servers for tests: free ports, readiness polling."""
import os
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# What a server started with -Y (ASCII authentication) answers an
# unauthenticated `version`: it is up, and refuses commands until a client
# authenticates.
UNAUTHENTICATED = b"CLIENT_ERROR unauthenticated"


# A binary-protocol `version` request (a bare header): how a server that
# speaks only the binary protocol is asked whether it is up.
BINARY_VERSION = b"\x80\x0b" + bytes(22)


def wait_ready(port, proc, timeout=20.0, probe=b"version\r\n"):
    """Polls until the port accepts a connection and answers `probe` (a
    text `version`: with its version, or with -Y's refusal; a binary one:
    with any binary response)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(probe)
                reply = s.recv(64)
                if (reply.startswith(b"VERSION") or reply.startswith(UNAUTHENTICATED)
                        or reply.startswith(b"\x81")):
                    return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("server on port %d not ready" % port)


def start_memcached(opts=(), attempts=5, env=None):
    """Starts Debian's memcached on a free loopback port; returns (proc, port).
    A server that speaks only the binary protocol (-S, -B binary) is probed
    with a binary `version`."""
    opts = list(opts)
    probe = BINARY_VERSION if "-S" in opts or "binary" in opts else b"version\r\n"
    for _ in range(attempts):
        port = free_port()
        args = ["memcached", "-p", str(port), "-U", "0", "-l", "127.0.0.1"]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        proc = subprocess.Popen(args + opts, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(port, proc, probe=probe)
            return proc, port
        except RuntimeError:
            stop(proc)
    raise RuntimeError("could not start memcached %s" % opts)


def start_server(cmd, attempts=5, extra=()):
    """Starts a wasmcached binary (`cmd` is its argv prefix) on a free port."""
    for _ in range(attempts):
        port = free_port()
        proc = subprocess.Popen(list(cmd) + ["-p", str(port)] + list(extra),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(port, proc)
            return proc, port
        except RuntimeError:
            stop(proc)
    raise RuntimeError("could not start %s" % cmd)


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
