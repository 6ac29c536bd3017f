"""dns/ with real clients: dig over UDP and TCP (with and without EDNS), dnspython,
SRV with additional records, NXDOMAIN vs NODATA, truncation and the TCP retry,
updates published while serving, garbage on both transports. dnsd serves a zone
built from a state.db on 127.0.0.1 (port 0)."""
import random
import socket
import struct
import time

import pytest

from test_dns_helpers import (Dnsd, app_cmds, counts_of, dig, flags_of, need_dig, nodes_cmds,
                         section, status_of)

dnspython = pytest.importorskip("dns.message")
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.resolver  # noqa: E402


def zone_cmds():
    web, web_tasks = app_cmds("/web", 3, first_ip=(10, 1, 0, 0))
    big, _ = app_cmds("/big/many", 100, first_ip=(10, 2, 0, 0))
    api, _ = app_cmds("/shop/backend/api", 2, first_ip=(10, 3, 0, 0))
    pending, _ = app_cmds("/pending", 2, healthy=False, first_ip=(10, 4, 0, 0))
    return nodes_cmds(3) + web + big + api + pending, web_tasks


@pytest.fixture
def server(procs, tmp_path):
    need_dig()
    cmds, _ = zone_cmds()
    return Dnsd(procs, tmp_path, cmds, extra=["--threads", "2"])


def test_dig_a_over_udp_and_tcp(server):
    for extra in ([], ["+tcp"]):
        out = dig(server.port, "web.cluster", "A", *extra)
        assert status_of(out) == "NOERROR", out
        assert {"qr", "aa", "rd"} <= flags_of(out)
        ips = sorted(r[4] for r in section(out, "ANSWER"))
        assert ips == ["10.1.0.1", "10.1.0.2", "10.1.0.3"], out
        assert all(r[1] == "5" for r in section(out, "ANSWER"))  # TTL 5 s
    # Case-insensitive, case preserved in the answer (RFC 4343).
    out = dig(server.port, "WeB.ClUsTeR", "A")
    assert section(out, "ANSWER")[0][0] == "WeB.ClUsTeR."
    # Nested path: api.backend.shop.
    out = dig(server.port, "api.backend.shop.cluster", "A", "+short")
    assert sorted(out.split()) == ["10.3.0.1", "10.3.0.2"]


def test_dig_with_and_without_edns(server):
    out = dig(server.port, "web.cluster", "A", "+noedns")
    assert "OPT PSEUDOSECTION" not in out
    assert counts_of(out)[1] == 3
    out = dig(server.port, "web.cluster", "A", "+bufsize=4096")
    assert "OPT PSEUDOSECTION" in out
    assert "udp: 1232" in out  # our advertised size
    out = dig(server.port, "web.cluster", "A", "+edns=1", "+noednsnegotiation")
    assert status_of(out) == "BADVERS"


def test_srv_with_additional_records(server):
    out = dig(server.port, "_http._tcp.web.cluster", "SRV")
    ans = section(out, "ANSWER")
    assert len(ans) == 3
    targets = {r[7] for r in ans}
    ports = sorted(int(r[6]) for r in ans)
    assert ports == [31000, 31010, 31020]
    assert all(r[4:6] == ["0", "1"] for r in ans)  # priority 0, weight 1
    add = {r[0]: r[4] for r in section(out, "ADDITIONAL") if r[3] == "A"}
    assert set(add) == targets
    # _<app>._tcp.<rest>: every port of every task.
    out = dig(server.port, "_web._tcp.cluster", "SRV")
    assert counts_of(out)[1] == 6
    # Named port of a nested app.
    out = dig(server.port, "_metrics._tcp.api.backend.shop.cluster", "SRV", "+short")
    assert len(out.split("\n")) >= 2


def test_nxdomain_vs_nodata(server):
    out = dig(server.port, "nothing.cluster", "A")
    assert status_of(out) == "NXDOMAIN"
    auth = section(out, "AUTHORITY")
    assert len(auth) == 1 and auth[0][3] == "SOA"
    # The name exists, with no AAAA: NODATA.
    out = dig(server.port, "web.cluster", "AAAA")
    assert status_of(out) == "NOERROR"
    assert counts_of(out)[1] == 0
    assert section(out, "AUTHORITY")[0][3] == "SOA"
    # An empty non-terminal (shop.cluster) exists too.
    out = dig(server.port, "shop.cluster", "A")
    assert status_of(out) == "NOERROR" and counts_of(out)[1] == 0
    # Tasks that are not healthy/running are not served: the name has no address.
    out = dig(server.port, "pending.cluster", "A")
    assert counts_of(out)[1] == 0
    # Apex: SOA and NS.
    out = dig(server.port, "cluster", "SOA", "+short")
    assert out.split()[0] == "n0.node.cluster."
    out = dig(server.port, "cluster", "NS", "+short")
    assert sorted(out.split()) == ["n0.node.cluster.", "n1.node.cluster.", "n2.node.cluster."]
    assert dig(server.port, "leader.cluster", "A", "+short").strip() == "10.0.0.1"
    # Outside the zone, no forwarding: REFUSED.
    assert status_of(dig(server.port, "example.com", "A")) == "REFUSED"


def test_truncation_and_tcp_retry(server):
    # 100 addresses do not fit in 512 bytes: TC, no answer records.
    out = dig(server.port, "many.big.cluster", "A", "+noedns", "+ignore")
    assert "tc" in flags_of(out), out
    assert counts_of(out)[1] == 0
    out = dig(server.port, "many.big.cluster", "A", "+bufsize=1232", "+ignore")
    assert "tc" in flags_of(out)
    # dig retries over TCP by itself and gets everything.
    out = dig(server.port, "many.big.cluster", "A", "+noedns")
    assert "Truncated, retrying in TCP mode" in out
    assert counts_of(out)[1] == 100
    assert "tc" not in flags_of(out)
    # SRV: answers that fit, additional records cut without TC.
    out = dig(server.port, "_http._tcp.many.big.cluster", "SRV", "+bufsize=4096", "+ignore")
    assert "tc" in flags_of(out) or counts_of(out)[1] == 100


def test_dnspython_udp_tcp_and_resolver(server):
    q = dns.message.make_query("web.cluster", "A")
    r = dns.query.udp(q, "127.0.0.1", port=server.port, timeout=2)
    assert r.id == q.id and r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA
    assert len(r.answer[0]) == 3
    q = dns.message.make_query("many.big.cluster", "A", use_edns=False)
    r = dns.query.udp(q, "127.0.0.1", port=server.port, timeout=2)
    assert r.flags & dns.flags.TC
    r = dns.query.tcp(q, "127.0.0.1", port=server.port, timeout=2)
    assert len(r.answer[0]) == 100
    # udp_with_fallback retries over TCP on TC.
    r, used_tcp = dns.query.udp_with_fallback(q, "127.0.0.1", port=server.port, timeout=2)
    assert used_tcp and len(r.answer[0]) == 100
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = ["127.0.0.1"]
    res.port = server.port
    ans = res.resolve("_http._tcp.web.cluster", "SRV")
    assert sorted(a.port for a in ans) == [31000, 31010, 31020]
    with pytest.raises(dns.resolver.NXDOMAIN):
        res.resolve("nope.cluster", "A")
    # Several queries pipelined on one TCP connection, answered in order.
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
        qs = [dns.message.make_query(n, "A") for n in ("web.cluster", "nope.cluster",
                                                       "n1.node.cluster")]
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in (m.to_wire() for m in qs)))
        f = s.makefile("rb")
        for m in qs:
            (n,) = struct.unpack("!H", f.read(2))
            r = dns.message.from_wire(f.read(n))
            assert r.id == m.id


def test_updates_are_published(server):
    cmds, _ = app_cmds("/late", 1, first_ip=(10, 9, 0, 0))
    assert status_of(dig(server.port, "late.cluster", "A")) == "NXDOMAIN"
    server.add(cmds)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if dig(server.port, "late.cluster", "A", "+short").strip() == "10.9.0.1":
            break
        time.sleep(0.05)
    else:
        pytest.fail("update not visible")
    # A kill takes the task out of DNS at once.
    server.add([{"type": "task.kill", "at": 9, "ids": ["late.t0"]}])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if dig(server.port, "late.cluster", "A", "+short").strip() == "":
            break
        time.sleep(0.05)
    else:
        pytest.fail("killed task still served")


def test_garbage_udp_and_tcp(server):
    rng = random.Random(7)
    q = dns.message.make_query("web.cluster", "A").to_wire()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setblocking(False)
    for i in range(3000):
        n = rng.randrange(0, 700)
        b = bytearray(rng.getrandbits(8) for _ in range(n))
        if i % 3 == 0 and n >= len(q):
            b[:len(q)] = q
            b[rng.randrange(n)] ^= 1 << rng.randrange(8)
        try:
            u.sendto(bytes(b), ("127.0.0.1", server.port))
        except BlockingIOError:
            pass
        try:
            while True:
                u.recv(8192)
        except BlockingIOError:
            pass
    u.close()
    for i in range(100):
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
            n = rng.randrange(0, 3000)
            data = bytes(rng.getrandbits(8) for _ in range(n))
            if i % 2 == 0:
                data = struct.pack("!H", min(n, 60)) + data
            try:
                s.sendall(data)
            except OSError:
                pass
    assert server.proc.alive()
    r = dns.query.udp(dns.message.make_query("web.cluster", "A"), "127.0.0.1",
                      port=server.port, timeout=2)
    assert len(r.answer[0]) == 3
    r = dns.query.tcp(dns.message.make_query("web.cluster", "A"), "127.0.0.1",
                      port=server.port, timeout=2)
    assert len(r.answer[0]) == 3


def test_zone_file_matches_what_is_served(server):
    text = open(server.zone_file).read()
    assert "web.cluster. 5 IN A 10.1.0.1" in text
    assert "$ORIGIN cluster." in text
    assert server.proc.stop() == 0  # clean exit on SIGTERM
    assert "dnsd: stop:" in server.proc.output()


def test_mesos_compat_names(procs, tmp_path):
    """--dns-compat mesos (compat.md §3): the Mesos-DNS names of the same tasks,
    under the same domain, next to the native ones."""
    need_dig()
    api, _ = app_cmds("/shop/api", 2, first_ip=(10, 5, 0, 0))
    s = Dnsd(procs, tmp_path, nodes_cmds(2) + api, extra=["--mesos-compat"], name="compat")
    for name in ("api-shop.marathon.cluster", "api.shop.marathon.cluster", "api.shop.cluster"):
        out = dig(s.port, name, "A", "+short")
        assert sorted(out.split()) == ["10.5.0.1", "10.5.0.2"], (name, out)
    out = dig(s.port, "_api-shop._tcp.marathon.cluster", "SRV")
    ans = section(out, "ANSWER")
    assert sorted(int(r[6]) for r in ans) == [31000, 31001, 31010, 31011]
    assert all(r[7].endswith(".marathon.cluster.") for r in ans)
    out = dig(s.port, "_http._api-shop._tcp.marathon.cluster", "SRV", "+short")
    assert len(out.split("\n")) >= 2
    assert dig(s.port, "leader.cluster", "A", "+short").strip() == "10.0.0.1"
    assert sorted(dig(s.port, "master.cluster", "A", "+short").split()) == \
        ["10.0.0.1", "10.0.0.2"]
    out = dig(s.port, "_leader._tcp.cluster", "SRV", "+short")
    assert out.split()[2] == "5050"
