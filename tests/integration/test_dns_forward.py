"""Forwarding with real clients: names outside the zone go to an upstream of our
own on loopback (a small dnspython authoritative server in this process, or
Knot when installed); the client's ID comes back, TC for UDP, the TCP retry,
SERVFAIL on an upstream failure or timeout. No traffic leaves 127.0.0.0/8:
dnsd gets --upstream explicitly, never the machine's resolv.conf."""
import os
import shutil
import socket
import struct
import threading
import time

import pytest

from test_dns_helpers import (Dnsd, app_cmds, counts_of, dig, flags_of, need_dig, nodes_cmds,
                              section, status_of)

pytest.importorskip("dns.message")
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rrset  # noqa: E402


def udp_tcp_pair():
    """A UDP and a TCP socket bound to the same free port on 127.0.0.1."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            t.bind(("127.0.0.1", u.getsockname()[1]))
            return u, t
        except OSError:
            u.close()
            t.close()
    raise RuntimeError("no free port for UDP and TCP")


class Upstream:
    """An authoritative server for a few names, on 127.0.0.1 (UDP and TCP):
    example.com A 192.0.2.10; big.example 80 A records; slow.example after 5 s
    (never in time); anything else NXDOMAIN. mute=True answers nothing."""

    def __init__(self, mute=False):
        self.mute = mute
        self.queries = []
        self.udp, self.tcp = udp_tcp_pair()
        self.port = self.udp.getsockname()[1]
        self.tcp.listen(16)
        self.udp.settimeout(0.1)
        self.tcp.settimeout(0.1)
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._udp_loop, daemon=True),
                        threading.Thread(target=self._tcp_loop, daemon=True)]
        for t in self.threads:
            t.start()

    def answer(self, wire, transport):
        q = dns.message.from_wire(wire)
        name = q.question[0].name.to_text().lower()
        self.queries.append((name, transport, q.id))
        if self.mute or name == "slow.example.":
            return None
        r = dns.message.make_response(q)
        r.flags |= dns.flags.RA
        if name == "example.com.":
            r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A",
                                                "192.0.2.10"))
        elif name == "big.example.":
            r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A",
                                                *["192.0.2.%d" % i for i in range(1, 81)]))
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)
        # Like a real server: cut to the client's UDP size with TC.
        limit = 65535 if transport == "tcp" else max(512, q.payload if q.edns >= 0 else 512)
        out = r.to_wire(max_size=65535)
        if len(out) > limit:
            r.answer = []
            r.flags |= dns.flags.TC
            out = r.to_wire()
        return out

    def _udp_loop(self):
        while not self.stop_ev.is_set():
            try:
                data, peer = self.udp.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            out = self.answer(data, "udp")
            if out is not None:
                self.udp.sendto(out, peer)

    def _tcp_loop(self):
        while not self.stop_ev.is_set():
            try:
                c, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._tcp_conn, args=(c,), daemon=True).start()

    def _tcp_conn(self, c):
        c.settimeout(2)
        f = c.makefile("rb")
        try:
            while True:
                hdr = f.read(2)
                if len(hdr) < 2:
                    break
                (n,) = struct.unpack("!H", hdr)
                out = self.answer(f.read(n), "tcp")
                if out is not None:
                    c.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.close()


def start(procs, tmp_path, upstream_port, extra=()):
    need_dig()
    web, _ = app_cmds("/web", 2)
    return Dnsd(procs, tmp_path, nodes_cmds(1) + web,
                extra=["--threads", "1", "--forward",
                       "--upstream", "127.0.0.1:%d" % upstream_port] + list(extra))


def test_forward_udp_and_tcp(procs, tmp_path, upstream):
    s = start(procs, tmp_path, upstream.port)
    out = dig(s.port, "example.com", "A")
    assert status_of(out) == "NOERROR", out
    assert section(out, "ANSWER")[0][4] == "192.0.2.10"
    assert "ra" in flags_of(out)
    assert "aa" not in flags_of(out)
    out = dig(s.port, "example.com", "A", "+tcp")
    assert section(out, "ANSWER")[0][4] == "192.0.2.10"
    assert ("example.com.", "tcp") in {(n, t) for n, t, _ in upstream.queries}
    assert status_of(dig(s.port, "nothing.example", "A")) == "NXDOMAIN"
    # The zone's names never go upstream.
    before = len(upstream.queries)
    assert status_of(dig(s.port, "nope.cluster", "A")) == "NXDOMAIN"
    assert dig(s.port, "web.cluster", "A", "+short").split()
    assert len(upstream.queries) == before
    # The client's ID comes back (dnspython checks it, and so do we).
    q = dns.message.make_query("example.com", "A")
    q.id = 4242
    r = dns.query.udp(q, "127.0.0.1", port=s.port, timeout=3)
    assert r.id == 4242 and r.answer
    assert all(qid != 4242 for _, _, qid in upstream.queries)  # c-ares used its own


def test_forward_truncation_and_tcp_retry(procs, tmp_path, upstream):
    s = start(procs, tmp_path, upstream.port)
    out = dig(s.port, "big.example", "A", "+noedns", "+ignore")
    assert "tc" in flags_of(out), out
    assert counts_of(out)[1] == 0
    out = dig(s.port, "big.example", "A", "+noedns")
    assert "Truncated, retrying in TCP mode" in out
    assert counts_of(out)[1] == 80
    # 1309 bytes: over 1232 too, so TC again and dig's TCP retry.
    out = dig(s.port, "big.example", "A", "+bufsize=1232")
    assert counts_of(out)[1] == 80 and "tc" not in flags_of(out)
    out = dig(s.port, "big.example", "A", "+bufsize=1232", "+ignore")
    assert "tc" in flags_of(out)


def test_forward_failure_is_servfail(procs, tmp_path):
    mute = Upstream(mute=True)
    try:
        s = start(procs, tmp_path, mute.port)
        t0 = time.monotonic()
        out = dig(s.port, "example.com", "A", "+time=8")
        assert status_of(out) == "SERVFAIL", out
        assert time.monotonic() - t0 < 8  # 2 tries x 1.5 s, never a hang
        out = dig(s.port, "example.com", "A", "+tcp", "+time=8")
        assert status_of(out) == "SERVFAIL", out
    finally:
        mute.close()
    # Nobody at the upstream port at all.
    out = dig(s.port, "example.com", "A", "+time=8")
    assert status_of(out) == "SERVFAIL"
    assert s.proc.alive()


def test_forward_slow_name_does_not_block_others(procs, tmp_path, upstream):
    s = start(procs, tmp_path, upstream.port)
    res = {}

    def slow():
        res["slow"] = status_of(dig(s.port, "slow.example", "A", "+time=8", timeout=15))

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    out = dig(s.port, "example.com", "A")
    assert status_of(out) == "NOERROR"
    assert time.monotonic() - t0 < 1.0
    t.join()
    assert res["slow"] == "SERVFAIL"


@pytest.mark.skipif(shutil.which("knotd") is None and not os.path.exists("/usr/sbin/knotd"),
                    reason="knotd is not installed (Debian package knot)")
def test_forward_to_knot(procs, tmp_path):
    """A real authoritative server as the upstream, on 127.0.0.1."""
    kdir = tmp_path / "knot"
    (kdir / "db").mkdir(parents=True)
    (kdir / "example.org.zone").write_text(
        "$ORIGIN example.org.\n$TTL 60\n"
        "@ IN SOA ns hostmaster 1 60 60 600 60\n@ IN NS ns\nns IN A 127.0.0.1\n"
        "www IN A 192.0.2.80\nwww IN AAAA 2001:db8::80\n")
    u, t = udp_tcp_pair()
    kport = u.getsockname()[1]
    u.close()
    t.close()
    (kdir / "knot.conf").write_text(
        'server:\n    rundir: "%s"\n    listen: 127.0.0.1@%d\n    udp-workers: 1\n'
        '    tcp-workers: 1\n    background-workers: 1\n'
        'database:\n    storage: "%s/db"\n'
        'log:\n  - target: stderr\n    any: warning\n'
        'zone:\n  - domain: example.org\n    storage: "%s"\n    file: "example.org.zone"\n'
        '    journal-content: none\n    zonefile-sync: -1\n' % (kdir, kport, kdir, kdir))
    knotd = shutil.which("knotd") or "/usr/sbin/knotd"
    knot = procs.start([knotd, "-c", str(kdir / "knot.conf")], name="knotd")
    deadline = time.monotonic() + 10
    while status_of(dig(kport, "www.example.org", "A")) != "NOERROR":
        assert knot.alive() and time.monotonic() < deadline, knot.output()
        time.sleep(0.1)
    s = start(procs, tmp_path, kport)
    assert dig(s.port, "www.example.org", "A", "+short").strip() == "192.0.2.80"
    assert dig(s.port, "www.example.org", "AAAA", "+short", "+tcp").strip() == "2001:db8::80"
    out = dig(s.port, "nope.example.org", "A")
    assert status_of(out) == "NXDOMAIN"
    assert section(out, "AUTHORITY")[0][3] == "SOA"  # Knot's, relayed as is
    assert "aa" in flags_of(out)
