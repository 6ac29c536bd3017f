"""Operating VIPs (issue 7, docs/vips.md "Operating VIPs"): a real `clusterctl agent
--dev` in a network namespace the test creates (and always deletes), with the named VIP
"/web:8080" in front of python http.server tasks. /metrics, GET /v1/vips and
`clusterctl vips` show the VIP, its address, mode and backends; in proxy mode the
connection counters follow the curls sent through the VIP, in nat mode the backends
gauge is there without userspace counters; a VIP port another socket holds shows
EADDRINUSE. Reuses test_vip_agent.py's namespace, agent and helpers; needs what that
file needs (root, netns, nft, curl, dig) and is skipped likewise."""
import json
import re
import subprocess
import uuid

import pytest

from conftest import build_path
from test_vip_agent import HTTP, SKIP, WEB, Agent, Ns, fetch, running, vip_address, wait

pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

N = 12  # requests through the VIP


class OpsNs(Ns):
    """test_vip_agent's namespace under this file's own prefix."""

    def __init__(self):
        self.name = "vipops-%s" % uuid.uuid4().hex[:8]
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")


@pytest.fixture
def ns():
    n = OpsNs()
    try:
        yield n
    finally:
        n.delete()


def metric(text, name, **labels):
    """The value of sample @name whose labels include @labels, or None."""
    for line in text.splitlines():
        m = re.match(r'^([a-z_]+)\{(.*)\} (\S+)$', line)
        if m is None or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2)))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


def metrics(agent):
    code, text = agent.api("GET", "/metrics")
    assert code == 200, text
    return text


def vips(agent):
    code, body = agent.api("GET", "/v1/vips")
    assert code == 200, body
    return body


def cli(ns, *args):
    r = ns.run(build_path("cmd", "clusterctl", "clusterctl"), "vips", "--addr",
               "127.0.0.1:%d" % HTTP, *args, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


def web_labels(addr, mode):
    return dict(vip="web", address=addr, port="8080", proto="tcp", mode=mode)


def the_vip(view, addr):
    got = [v for v in view["vips"] if v["address"] == addr and v["port"] == 8080]
    assert len(got) == 1, view
    return got[0]


def check_view(agent, ns, addr, mode):
    """/v1/vips and `clusterctl vips` show the VIP with the running tasks as its
    eligible backends."""
    tasks = {t["id"]: t for t in agent.tasks()}
    view = vips(agent)
    assert view["mode"] == mode, view
    assert view["node"], view
    v = the_vip(view, addr)
    assert v["name"] == "web" and v["protocol"] == "tcp" and v["mode"] == mode, v
    assert v["apps"] == ["/web"], v
    assert v["listenError"] is None, v
    assert v["eligibleBackends"] == len(tasks), v
    bes = {b["taskId"]: b for b in v["backends"]}
    assert set(bes) == set(tasks), (bes, tasks)
    for tid, b in bes.items():
        assert b["eligible"] is True and b["reason"] is None, b
        assert b["appId"] == "/web", b
        assert b["port"] == tasks[tid]["ports"][0], (b, tasks[tid])
        # The task's host when numeric, else its node's address.
        assert re.match(r"^\d+\.\d+\.\d+\.\d+$", b["host"]), b
        if re.match(r"^\d+\.\d+\.\d+\.\d+$", tasks[tid]["host"]):
            assert b["host"] == tasks[tid]["host"], (b, tasks[tid])

    out = cli(ns)
    head, *rows = out.splitlines()
    assert head.split() == ["NAME", "ADDRESS", "PORT", "PROTO", "MODE", "BACKENDS",
                            "ACTIVE", "TOTAL", "FAILED", "NOTE"], out
    row = [r.split() for r in rows if addr in r.split()]
    assert len(row) == 1, out
    assert row[0][:6] == ["web", addr, "8080", "tcp", mode,
                          "%d/%d" % (len(tasks), len(tasks))], out
    def shape(vv):
        return [(x["address"], x["port"], x["mode"],
                 sorted((b["taskId"], b["host"], b["port"], b["eligible"])
                        for b in x["backends"])) for x in vv["vips"]]
    as_json = json.loads(cli(ns, "--json"))
    assert shape(as_json) == shape(view), (as_json, view)
    by_task = cli(ns, "--backends")
    for tid in tasks:
        assert tid in by_task, by_task
    return v


def test_vip_ops_metrics_view_and_cli(ns, procs, tmp_path):
    agent = Agent(ns, procs, str(tmp_path / "data"))
    agent.start()  # auto: nat, nftables works here (SKIP checked)
    code, body = agent.api("POST", "/v2/apps", dict(WEB, instances=2))
    assert code == 201, body
    wait(lambda: running(agent, 2), "two running tasks", timeout=60)
    wait(lambda: vip_address(ns) != "", "web.vip.cluster")
    addr = vip_address(ns)
    wait(lambda: fetch(ns, addr) is not None, "the VIP to answer")

    # nat mode: the backends gauge, no userspace counters.
    wait(lambda: metric(metrics(agent), "clusterctl_vip_backends",
                        **web_labels(addr, "nat")) == 2, "two eligible backends (nat)")
    text = metrics(agent)
    assert "# TYPE clusterctl_vip_backends gauge" in text
    assert "# TYPE clusterctl_vip_connections_total counter" in text
    assert metric(text, "clusterctl_vip_connections_total", vip="web") is None, text
    v = check_view(agent, ns, addr, "nat")
    assert v["metrics"] is None, v
    assert all(b["activeConnections"] is None for b in v["backends"]), v
    row = [r.split() for r in cli(ns).splitlines() if addr in r.split()][0]
    assert row[6:9] == ["-", "-", "-"], row

    # proxy mode, the same tasks: N requests through the VIP are counted.
    assert agent.p.stop() == 0
    agent.start(mode="proxy")
    wait(lambda: fetch(ns, addr) is not None, "the proxied VIP to answer")
    got = [fetch(ns, addr) for _ in range(N)]
    assert None not in got, got
    text = metrics(agent)
    labels = web_labels(addr, "proxy")
    total = metric(text, "clusterctl_vip_connections_total", **labels)
    assert total is not None and total >= N, text
    assert metric(text, "clusterctl_vip_connections_failed_total", **labels) == 0, text
    assert metric(text, "clusterctl_vip_bytes_in_total", **labels) > 0, text
    assert metric(text, "clusterctl_vip_bytes_out_total", **labels) > 0, text
    assert metric(text, "clusterctl_vip_connections_active", **labels) is not None, text
    assert metric(text, "clusterctl_vip_backends", **labels) == 2, text
    assert metric(text, "clusterctl_vip_listen_error", vip="web") is None, text

    v = check_view(agent, ns, addr, "proxy")
    assert v["metrics"]["total"] >= N and v["metrics"]["failed"] == 0, v
    assert v["metrics"]["bytesOut"] > 0, v
    assert all(isinstance(b["activeConnections"], int) for b in v["backends"]), v
    row = [r.split() for r in cli(ns).splitlines() if addr in r.split()][0]
    assert int(row[7]) >= N and row[8] == "0", row
    assert agent.p.stop() == 0


def test_vip_ops_listen_error(ns, procs, tmp_path):
    agent = Agent(ns, procs, str(tmp_path / "data"))
    agent.start(mode="proxy")
    # Another socket holds the VIP's port on every address of the namespace.
    holder = procs.start(ns.argv(
        "python3", "-c",
        "import socket, time\n"
        "s = socket.socket()\n"
        "s.bind(('0.0.0.0', 8080))\n"
        "s.listen()\n"
        "print('holding', flush=True)\n"
        "time.sleep(3600)\n"), name="holder")
    wait(lambda: "holding" in holder.output(), "the port holder")
    code, body = agent.api("POST", "/v2/apps", dict(WEB, instances=1))
    assert code == 201, body
    wait(lambda: vip_address(ns) != "", "web.vip.cluster")
    addr = vip_address(ns)

    def listen_error():
        view = vips(agent)
        v = [v for v in view["vips"] if v["address"] == addr]
        return v[0]["listenError"] if v else None

    wait(lambda: listen_error() == "EADDRINUSE", "listenError EADDRINUSE in /v1/vips")
    text = metrics(agent)
    assert metric(text, "clusterctl_vip_listen_error", errno="EADDRINUSE",
                  **web_labels(addr, "proxy")) == 1, text
    row = [r for r in cli(ns).splitlines() if addr in r.split()]
    assert len(row) == 1 and "cannot listen: EADDRINUSE" in row[0], row

    # The port is free again: the proxy's retry listens, the error goes.
    holder.stop()
    wait(lambda: listen_error() is None, "listenError to clear")
    wait(lambda: running(agent, 1), "the task")
    wait(lambda: fetch(ns, addr) is not None, "the VIP to answer")
    assert metric(metrics(agent), "clusterctl_vip_listen_error", vip="web") is None
    assert agent.p.stop() == 0
