"""Three real agents on loopback (distinct ports and --name): the first creates the
cluster and its join token, two join over TLS with the token (one through a host
name, resolved with c-ares), autopilot promotes them to voters, writes through a
follower are forwarded to the leader, every replica serves the app, a SIGKILL of
the leader leads to a new leader and writes resume, and the rpc port refuses raft
traffic from a client without a certificate or with one from another CA."""
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import time
import urllib.error
import urllib.request

import conftest
from conftest import free_port, wait_for_port, wait_until

APP = {"id": "/hello", "cmd": "sleep 300", "cpus": 0.01, "mem": 16, "instances": 2}


def api(addr, method, path, body=None, timeout=10):
    return conftest.api(addr, method, path, body, timeout, unreachable=(None, None))


def metric(addr, name):
    with urllib.request.urlopen("http://%s/metrics" % addr, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


class Node:
    def __init__(self, i, tmp):
        self.i = i
        self.name = "n%d" % i
        self.http, self.rpc, self.dns = free_port(), free_port(), free_port()
        self.data = str(tmp / ("data-%d" % i))
        self.addr = "127.0.0.1:%d" % self.http
        self.proc = None

    def argv(self, bin_, extra):
        self.extra = extra
        lo = 33000 + 200 * self.i
        return [bin_, "agent", "--name", self.name, "--data-dir", self.data,
                "--bind", "127.0.0.1", "--advertise", "127.0.0.1",
                "--http-port", str(self.http), "--rpc-port", str(self.rpc),
                "--dns-addr", "127.0.0.1:%d" % self.dns,
                "--resources", "ports=[%d-%d]" % (lo, lo + 99)] + extra


def cli(bin_, addr, *args, timeout=90):
    return subprocess.run([bin_, *args, "--addr", addr], capture_output=True, text=True,
                          timeout=timeout)


def members(bin_, addr):
    r = cli(bin_, addr, "members", "--json", timeout=10)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def leader_of(nodes):
    for n in nodes:
        st, j = api(n.addr, "GET", "/v2/leader", timeout=2)
        if st == 200:
            for m in nodes:
                if m.addr == j["leader"]:
                    return m
    return None


def tls_hello(port, cluster_id, certfile=None, keyfile=None):
    """Connect with TLS (no certificate, or the given one), send a HELLO frame and
    return what the server does: 'closed' when it drops us, 'open' when it keeps
    listening, 'handshake-failed' when TLS itself refuses."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        t = ctx.wrap_socket(s)
        body = struct.pack(">QQ", 0x1234, cluster_id)
        t.sendall(struct.pack(">IBB", 2 + len(body), 1, 0) + body)
        t.settimeout(3)
        try:
            data = t.recv(100)
            return "closed" if data == b"" else "data"
        except socket.timeout:
            return "open"
        except (ssl.SSLError, ConnectionResetError):
            return "closed"
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return "handshake-failed"
    finally:
        s.close()


def other_ca_cert(tmp):
    """A CA and a client certificate that have nothing to do with the cluster."""
    d = str(tmp / "otherca")
    os.makedirs(d)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=d)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=evil CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "c.key", "-out", "c.csr", "-subj", "/CN=n9")
    run("openssl", "x509", "-req", "-in", "c.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "c.pem", "-days", "2")
    return os.path.join(d, "c.pem"), os.path.join(d, "c.key")


def test_cluster_join(procs, tmp_path, clusterctl_bin):
    nodes = [Node(i, tmp_path) for i in (1, 2, 3)]
    n1, n2, n3 = nodes
    try:
        n1.proc = procs.start(n1.argv(clusterctl_bin, []), name="n1")
        token_file = os.path.join(n1.data, "tls", "join-token")
        wait_until(lambda: os.path.exists(token_file), 20, "the join token file")
        token = open(token_file).read().strip()
        assert token.startswith("cmjoin1.") and len(token) == 105
        assert oct(os.stat(token_file).st_mode & 0o777) == "0o600"
        wait_for_port("127.0.0.1", n1.http, timeout=20, proc=n1.proc.p)
        wait_until(lambda: "join token: " + token in n1.proc.output(), 10,
                   "the token in the log")

        # One joins through the address, one through a name and a dead address.
        n2.proc = procs.start(n2.argv(clusterctl_bin, [
            "--join", "127.0.0.1:%d" % n1.rpc, "--token", token]), name="n2")
        n3.proc = procs.start(n3.argv(clusterctl_bin, [
            "--join", "127.0.0.1:%d,localhost:%d" % (free_port(), n1.rpc),
            "--token", token]), name="n3")

        def three_voters():
            ms = members(clusterctl_bin, n1.addr)
            return ms if ms and len(ms) == 3 and all(
                m["role"] == "voter" for m in ms) else None
        ms = wait_until(three_voters, 90, "3 voters")
        assert sorted(m["name"] for m in ms) == ["n1", "n2", "n3"]
        assert sum(1 for m in ms if m["leader"]) == 1
        table = cli(clusterctl_bin, n2.addr, "members")
        assert table.returncode == 0, table.stderr
        assert "n3" in table.stdout and "voter" in table.stdout

        # A joined node has the cluster's id and certificates.
        assert open(os.path.join(n2.data, "node-id")).read().split("cluster=")[1] == \
            open(os.path.join(n1.data, "node-id")).read().split("cluster=")[1]
        for f in ("ca.pem", "ca.key", "node.pem", "node.key", "join-token"):
            assert os.path.exists(os.path.join(n3.data, "tls", f)), f

        # Certificate rotation: SIGHUP makes a node issue itself a new
        # certificate from the CA and reload it; new connections use it.
        pem = os.path.join(n2.data, "tls", "node.pem")
        old_pem = open(pem).read()
        n2.proc.p.send_signal(signal.SIGHUP)
        wait_until(lambda: open(pem).read() != old_pem, 10, "a renewed node.pem")
        wait_until(lambda: "node certificate renewed" in n2.proc.output(), 10,
                   "the renewal logged")

        leader = wait_until(lambda: leader_of(nodes), 30, "a leader")
        follower = next(n for n in nodes if n is not leader)
        app = tmp_path / "hello.json"
        app.write_text(json.dumps(APP))
        r = cli(clusterctl_bin, follower.addr, "run", str(app), timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        for n in nodes:
            wait_until(lambda: any(a["id"] == "/hello"
                                   for a in (api(n.addr, "GET", "/v2/apps")[1] or
                                             {"apps": []})["apps"]),
                       30, "/hello on %s" % n.name)
        st, j = api(follower.addr, "GET", "/v2/apps/hello?consistent=true")
        assert st == 200 and j["app"]["instances"] == 2
        assert metric(follower.addr, "clusterctl_forwarded_total") >= 1

        # The rpc port: no certificate, or one of another CA: no raft traffic.
        cluster_id = int(open(os.path.join(n1.data, "node-id")).read()
                         .split("cluster=")[1], 16)
        before = metric(n1.addr, "clusterctl_transport_refused_total")
        assert tls_hello(n1.rpc, cluster_id) == "closed"
        cert, key = other_ca_cert(tmp_path)
        assert tls_hello(n1.rpc, cluster_id, cert, key) in ("closed", "handshake-failed")
        wait_until(lambda: metric(n1.addr, "clusterctl_transport_refused_total") >=
                   before + 1, 10, "the refusals counted")
        assert members(clusterctl_bin, n1.addr) is not None  # still serving

        # Kill the leader: a new one is elected and writes through a follower resume.
        old = leader
        old.proc.kill9()
        rest = [n for n in nodes if n is not old]
        new = wait_until(lambda: (lambda l: l if l is not None and l is not old else None)(
            leader_of(rest)), 30, "a new leader")
        follower = next(n for n in rest if n is not new)

        def scaled():
            r = cli(clusterctl_bin, follower.addr, "scale", "hello", "3", timeout=30)
            return r.returncode == 0
        wait_until(scaled, 60, "a write through the follower after the leader died")
        for n in rest:
            wait_until(lambda: (api(n.addr, "GET", "/v2/apps/hello")[1] or
                                {"app": {}})["app"].get("instances") == 3,
                       30, "instances 3 on %s" % n.name)

        # The old leader comes back with the same command line: it does not join
        # again (its data dir has its identity) and catches up.
        old.proc = procs.start(old.argv(clusterctl_bin, old.extra), name=old.name + "-again")
        wait_for_port("127.0.0.1", old.http, timeout=20, proc=old.proc.p)
        wait_until(lambda: (api(old.addr, "GET", "/v2/apps/hello")[1] or
                            {"app": {}})["app"].get("instances") == 3,
                   30, "the restarted node catching up")
        assert "joining through" not in old.proc.output()
        ms = members(clusterctl_bin, new.addr)
        assert len(ms) == 3

        # A fourth node joins through a follower, which asks the leader (RPC) to
        # add it; three voters are enough, so it stays a learner.
        n4 = Node(4, tmp_path)
        nodes.append(n4)
        via = next(n for n in nodes[:3] if n is not new)
        n4.proc = procs.start(n4.argv(clusterctl_bin, [
            "--join", "127.0.0.1:%d" % via.rpc, "--token", token]), name="n4")
        four = wait_until(lambda: (lambda ms: ms if ms and len(ms) == 4 else None)(
            members(clusterctl_bin, new.addr)), 60, "a fourth member")
        assert {m["name"]: m["role"] for m in four}["n4"] == "learner"
        wait_until(lambda: (api(n4.addr, "GET", "/v2/apps/hello")[1] or
                            {"app": {}})["app"].get("instances") == 3,
                   30, "the learner's replica")
    finally:
        for n in nodes:
            if n.proc is not None and n.proc.alive():
                api(n.addr, "DELETE", "/v2/apps/hello?force=true")
        # Wait until no task of the app is left on any live node.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left = 0
            for n in nodes:
                if n.proc is not None and n.proc.alive():
                    st, j = api(n.addr, "GET", "/v2/tasks", timeout=2)
                    if st == 200:
                        left += len(j.get("tasks", []))
            if left == 0:
                break
            time.sleep(0.3)


def test_autopilot_replaces_a_dead_voter(procs, tmp_path, clusterctl_bin):
    """Four nodes, three voters wanted: the fourth stays a learner; when a voter dies,
    after the grace period (30 s) the learner is promoted and the dead voter demoted,
    so three live voters remain."""
    nodes = [Node(i, tmp_path) for i in (1, 2, 3, 4)]
    n1 = nodes[0]
    n1.proc = procs.start(n1.argv(clusterctl_bin, []), name="n1")
    token_file = os.path.join(n1.data, "tls", "join-token")
    wait_until(lambda: os.path.exists(token_file), 20, "the join token file")
    token = open(token_file).read().strip()
    for n in nodes[1:]:
        n.proc = procs.start(n.argv(clusterctl_bin, [
            "--join", "127.0.0.1:%d" % n1.rpc, "--token", token]), name=n.name)

    def roles():
        ms = members(clusterctl_bin, n1.addr)
        if not ms or len(ms) != 4:
            return None
        return {m["name"]: m["role"] for m in ms}
    r = wait_until(lambda: (lambda x: x if x and sorted(x.values()) ==
                            ["learner", "voter", "voter", "voter"] else None)(roles()),
                   90, "3 voters and a learner")
    leader = wait_until(lambda: leader_of(nodes), 30, "a leader")
    learner = next(n for n in nodes if r[n.name] == "learner")
    victim = next(n for n in nodes if r[n.name] == "voter" and n is not leader)
    victim.proc.kill9()

    def replaced():
        ms = members(clusterctl_bin, leader.addr)
        if not ms:
            return None
        x = {m["name"]: m["role"] for m in ms}
        return x if x.get(learner.name) == "voter" and x.get(victim.name) == "learner" \
            else None
    x = wait_until(replaced, 120, "the learner promoted and the dead voter demoted")
    assert sorted(x.values()) == ["learner", "voter", "voter", "voter"]
    assert "demoting" in leader.proc.output()
