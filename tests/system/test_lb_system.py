"""lb/ end to end in network namespaces the tests create (and always delete): real
backends behind a VIP in mode nat (nftables DNAT) and mode proxy (the libev proxy),
run by tests/bench/lbd. Needs root (netns, nftables, rtnetlink); skipped otherwise.
Traffic only ever goes to addresses inside these namespaces."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import build_path  # noqa: E402

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lb_helper.py")
PY = "/usr/bin/python3"
VIP = "198.18.0.1"


def run(*argv, check=True):
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=30)


def can_netns():
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables, rtnetlink)"
    name = "cmlb-probe-%d" % os.getpid()
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return "cannot create a network namespace: " + r.stderr.strip()
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


SKIP = can_netns()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


class Netns:
    def __init__(self, name):
        self.name = name

    def exec(self, *argv, check=True):
        return run("ip", "netns", "exec", self.name, *argv, check=check)

    def argv(self, *argv):
        return ["ip", "netns", "exec", self.name] + list(argv)


@pytest.fixture
def ns():
    made = []

    def make():
        n = Netns("cmlb-%s" % uuid.uuid4().hex[:8])
        run("ip", "netns", "add", n.name)
        made.append(n)
        n.exec("ip", "link", "set", "lo", "up")
        return n

    try:
        yield make
    finally:
        for n in made:
            subprocess.run(["ip", "netns", "del", n.name], capture_output=True)


class Lb:
    """One node namespace with backends and lbd."""

    def __init__(self, node, procs, tmp):
        self.node = node
        self.procs = procs
        self.tmp = tmp
        self.cfg = str(tmp / "lb.json")
        self.status = str(tmp / "status.json")
        self.backends = {}
        self.lbd = None

    def backend(self, ident, host, port=8080, ns=None):
        p = self.procs.start((ns or self.node).argv(PY, HELPER, "server", ident, host,
                                                    str(port)), "backend-" + ident)
        self.backends[ident] = (p, "%s:%d" % (host, port))
        for _ in range(200):
            if "listening" in p.output():
                return p
            time.sleep(0.02)
        raise TimeoutError("backend %s" % ident)

    def write(self, vips):
        tmp = self.cfg + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"vips": vips}, f)
        os.rename(tmp, self.cfg)

    def start(self, mode, *extra):
        self.lbd = self.procs.start(self.node.argv(
            build_path("tests", "bench", "lbd"), "--config", self.cfg, "--mode", mode,
            "--status", self.status, *extra), "lbd")
        for _ in range(300):
            if "lbd: ready" in self.lbd.output():
                return self.lbd
            if not self.lbd.alive():
                break
            time.sleep(0.02)
        raise RuntimeError("lbd did not start:\n" + self.lbd.output())

    def reload(self):
        before = self.lbd.output().count("reloaded")
        os.kill(self.lbd.pid, signal.SIGHUP)
        for _ in range(300):
            if self.lbd.output().count("reloaded") > before:
                return
            time.sleep(0.02)
        raise TimeoutError("no reload:\n" + self.lbd.output())

    def stat(self):
        with open(self.status) as f:
            return json.load(f)

    def get(self, n, host=VIP, port=80, ns=None):
        r = (ns or self.node).exec(PY, HELPER, "get", host, str(port), str(n))
        return json.loads(r.stdout)

    def nft(self):
        return self.node.exec("nft", "list", "ruleset").stdout

    def addrs(self):
        return self.node.exec("ip", "-4", "-o", "addr", "show", "dev", "lo").stdout


def vip_cfg(backends, mode="auto", vip=VIP + ":80", **kw):
    v = {"vip": vip, "mode": mode, "backends": backends}
    v.update(kw)
    return v


@pytest.fixture
def lb(ns, procs, tmp_path):
    return Lb(ns(), procs, tmp_path)


@pytest.mark.parametrize("mode", ["nat", "proxy"])
def test_lb_spread_and_failover(lb, mode):
    for i in (2, 3, 4):
        lb.backend("b%d" % i, "127.0.0.%d" % i)
    bes = [{"addr": "127.0.0.%d:8080" % i} for i in (2, 3, 4)]
    lb.write([vip_cfg(bes)])
    out = lb.start(mode).output()
    assert "mode=%s" % mode in out
    assert "%s/32" % VIP in lb.addrs() and "lo:cm" in lb.addrs()
    if mode == "nat":
        assert "table ip clusterctl" in lb.nft()
    else:
        assert "clusterctl" not in lb.nft()

    got = lb.get(60)
    assert got.count("ERR") == 0, got
    for b in ("b2", "b3", "b4"):
        assert got.count(b) >= 8, got

    # b3 dies.
    lb.backends["b3"][0].stop()
    if mode == "nat":
        # The kernel does not know b3 is gone: the table is replaced without it.
        lb.write([vip_cfg([bes[0], bes[2]])])
        lb.reload()
        assert "127.0.0.3" not in lb.nft()
    got = lb.get(40)
    assert got.count("ERR") == 0, got
    assert got.count("b3") == 0 and got.count("b2") >= 5 and got.count("b4") >= 5, got
    if mode == "proxy":
        time.sleep(0.3)
        st = lb.stat()["vips"][0]
        assert st["failed"] == 0 and st["total"] == 100, st


@pytest.mark.parametrize("mode", ["nat", "proxy"])
def test_lb_drain(lb, mode):
    lb.backend("b2", "127.0.0.2")
    lb.backend("b3", "127.0.0.3")
    bes = [{"addr": "127.0.0.2:8080"}, {"addr": "127.0.0.3:8080"}]
    lb.write([vip_cfg(bes)])
    lb.start(mode, "--drain-timeout-ms", "4000")

    # A long connection (2 s of streaming), then its backend is marked draining.
    out = str(lb.tmp / "slow.txt")
    slow = lb.procs.start(lb.node.argv(PY, HELPER, "slow", VIP, "80", "2", out), "slow")
    for _ in range(200):
        if os.path.exists(out) and open(out).read().strip():
            break
        time.sleep(0.02)
    first = open(out).read().split()[0]
    assert first in ("b2", "b3")
    other = "b3" if first == "b2" else "b2"
    drained = {"b2": "127.0.0.2:8080", "b3": "127.0.0.3:8080"}[first]
    if mode == "proxy":
        time.sleep(0.3)
        assert lb.stat()["vips"][0]["backends"][drained] == 1
    lb.write([vip_cfg([dict(b, draining=b["addr"] == drained) for b in bes])])
    lb.reload()

    got = lb.get(20)
    assert got == [other] * 20, got  # no new connection to the draining backend

    slow.p.wait(15)
    done = open(out).read().split("\n")[1].split()
    assert done[0] == "done" and int(done[1]) >= 38, done  # the whole stream arrived
    if mode == "proxy":
        time.sleep(0.3)
        assert lb.stat()["vips"][0]["backends"][drained] == 0  # the executor may kill it


def test_lb_drain_timeout_cuts_long_connections(lb):
    lb.backend("b2", "127.0.0.2")
    bes = [{"addr": "127.0.0.2:8080"}]
    lb.write([vip_cfg(bes, mode="proxy")])
    lb.start("proxy", "--drain-timeout-ms", "1000")
    out = str(lb.tmp / "slow.txt")
    slow = lb.procs.start(lb.node.argv(PY, HELPER, "slow", VIP, "80", "10", out), "slow")
    for _ in range(200):
        if os.path.exists(out) and open(out).read().strip():
            break
        time.sleep(0.02)
    lb.write([vip_cfg([dict(bes[0], draining=True)], mode="proxy")])
    lb.reload()
    slow.p.wait(10)
    done = open(out).read().split("\n")[1].split()
    assert done[0] == "done" and 0.8 <= float(done[2]) < 5, done


def test_lb_clean_exit_and_crash_repair(lb):
    lb.backend("b2", "127.0.0.2")
    lb.write([vip_cfg([{"addr": "127.0.0.2:8080"}], mode="nat"),
              vip_cfg([{"addr": "127.0.0.2:8080"}], mode="proxy", vip="198.18.0.2:80")])
    p = lb.start("nat")
    assert lb.get(3) == ["b2"] * 3
    assert lb.get(3, host="198.18.0.2") == ["b2"] * 3
    # Clean exit: no table, no VIP address.
    assert p.stop() == 0
    assert "clusterctl" not in lb.nft()
    assert "198.18.0" not in lb.addrs()

    # kill -9 leaves both behind ...
    p = lb.start("nat")
    p.kill9()
    assert "table ip clusterctl" in lb.nft()
    assert "198.18.0.1/32" in lb.addrs() and "198.18.0.2/32" in lb.addrs()
    # ... and the next start repairs: only what the new table wants remains.
    lb.write([vip_cfg([{"addr": "127.0.0.2:8080"}], mode="nat", vip="198.18.0.5:80")])
    p = lb.start("nat")
    a = lb.addrs()
    assert "198.18.0.5/32" in a and "198.18.0.1/" not in a and "198.18.0.2/" not in a, a
    assert lb.nft().count("table ip clusterctl") == 1
    assert "198.18.0.1 " not in lb.nft()
    assert lb.get(2, host="198.18.0.5") == ["b2"] * 2
    assert p.stop() == 0
    assert "clusterctl" not in lb.nft() and "198.18.0" not in lb.addrs()
    # An address someone else put on lo is never touched.
    lb.node.exec("ip", "addr", "add", "198.18.0.9/32", "dev", "lo")
    p = lb.start("nat")
    assert p.stop() == 0
    assert "198.18.0.9/32" in lb.addrs()


def veth(a, a_if, a_ip, b, b_if, b_ip):
    run("ip", "link", "add", a_if, "netns", a.name, "type", "veth", "peer", b_if, "netns",
        b.name)
    a.exec("ip", "addr", "add", a_ip, "dev", a_if)
    b.exec("ip", "addr", "add", b_ip, "dev", b_if)
    a.exec("ip", "link", "set", a_if, "up")
    b.exec("ip", "link", "set", b_if, "up")


def test_lb_nat_client_address(ns, procs, tmp_path):
    """A client namespace (a container) and a backend namespace, both joined to the
    node by veth pairs: prerouting DNAT keeps the client's address; the node's own
    traffic to a remote backend leaves masqueraded (its VIP source would not route
    back); loopback backends are reachable from the node itself only."""
    node, client, bns = ns(), ns(), ns()
    veth(client, "c0", "10.200.0.2/24", node, "h0", "10.200.0.1/24")
    veth(bns, "b0", "10.201.0.2/24", node, "h1", "10.201.0.1/24")
    client.exec("ip", "route", "add", "default", "via", "10.200.0.1")
    bns.exec("ip", "route", "add", "default", "via", "10.201.0.1")
    node.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
    lb = Lb(node, procs, tmp_path)
    lb.backend("remote", "10.201.0.2", ns=bns)
    lb.backend("local", "127.0.0.2")
    lb.write([vip_cfg([{"addr": "10.201.0.2:8080"}], mode="nat"),
              vip_cfg([{"addr": "127.0.0.2:8080"}], mode="nat", vip="198.18.0.3:80")])
    lb.start("nat")

    who = client.exec(PY, HELPER, "who", VIP, "80").stdout.split()
    assert who == ["remote", "10.200.0.2"]  # the client's own address
    who = node.exec(PY, HELPER, "who", VIP, "80").stdout.split()
    assert who == ["remote", "10.201.0.1"]  # node-local: masqueraded
    who = node.exec(PY, HELPER, "who", "198.18.0.3", "80").stdout.split()
    assert who[0] == "local"
    # From the container, a loopback backend is martian after DNAT (route_localnet=0).
    r = client.exec(PY, HELPER, "get", "198.18.0.3", "80", "1")
    assert json.loads(r.stdout) == ["ERR"]
