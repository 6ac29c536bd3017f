"""Client helpers for the raftkv test node (tests/integration/raftkv.c)."""
import os
import socket
import time

from conftest import build_path, free_port, wait_for_port


class KvClient:
    def __init__(self, port, timeout=5.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.s.makefile("rb")

    def req(self, line):
        self.s.sendall((line + "\n").encode())
        r = self.f.readline()
        if not r:
            raise ConnectionError("connection closed")
        return r.decode().rstrip("\n")

    def close(self):
        self.f.close()
        self.s.close()


def kv(port, line, timeout=5.0):
    c = KvClient(port, timeout)
    try:
        return c.req(line)
    finally:
        c.close()


def status(port):
    try:
        r = kv(port, "STATUS", timeout=1.0)
    except OSError:
        return None
    return dict(x.split("=", 1) for x in r.split())


class RaftKvCluster:
    """N raftkv processes on loopback, each with its own data dir and ports."""

    def __init__(self, procs, tmp_path, n=3, snapshot_threshold=None):
        self.procs = procs
        self.bin = build_path("tests", "integration", "raftkv")
        self.n = n
        self.raft_ports = {i: free_port() for i in range(1, n + 1)}
        self.client_ports = {i: free_port() for i in range(1, n + 1)}
        self.dirs = {}
        for i in range(1, n + 1):
            d = tmp_path / ("node%d" % i)
            d.mkdir()
            self.dirs[i] = str(d)
        self.peers = ",".join("%d=127.0.0.1:%d" % (i, p) for i, p in self.raft_ports.items())
        self.snapshot_threshold = snapshot_threshold
        self.p = {}

    def start(self, i, bootstrap=True):
        argv = [self.bin, "--id", str(i), "--dir", self.dirs[i],
                "--raft", "127.0.0.1:%d" % self.raft_ports[i],
                "--client", "127.0.0.1:%d" % self.client_ports[i],
                "--peers", self.peers]
        if bootstrap:
            argv.append("--bootstrap")
        if self.snapshot_threshold:
            argv += ["--snapshot-threshold", str(self.snapshot_threshold)]
        self.p[i] = self.procs.start(argv, name="raftkv%d" % i)
        wait_for_port("127.0.0.1", self.client_ports[i], proc=self.p[i].p)

    def start_all(self):
        for i in range(1, self.n + 1):
            self.start(i)

    def alive(self):
        return [i for i in self.p if self.p[i].alive()]

    def leader(self, timeout=10.0, among=None):
        """The id every live node agrees is leader (and that says it is)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = among or self.alive()
            sts = {i: status(self.client_ports[i]) for i in ids}
            leaders = [i for i, s in sts.items() if s and s["role"] == "leader"]
            if len(leaders) == 1:
                return leaders[0]
            time.sleep(0.05)
        raise TimeoutError("no single leader after %.1fs" % timeout)

    def put(self, key, value, timeout=10.0):
        """PUT through whoever is leader, retrying until acknowledged."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                lid = self.leader(timeout=max(0.1, deadline - time.monotonic()))
                last = kv(self.client_ports[lid], "PUT %s %s" % (key, value))
                if last.startswith("OK "):
                    return int(last.split()[1])
            except (OSError, TimeoutError) as e:
                last = repr(e)
            time.sleep(0.05)
        raise TimeoutError("PUT %s not acknowledged: %s" % (key, last))
