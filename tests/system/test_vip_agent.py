"""VIPs end to end (issue 7): a real `clusterctl agent --dev` in a network namespace
the test creates (and always deletes) runs python http.server tasks behind the named
VIP "/web:8080"; DNS gives the VIP's address, curl through it works in nat and proxy
mode, a killed backend leaves, a rolling restart under a curl loop loses no request,
and the nft table and lo addresses are gone after a clean stop and repaired after
kill -9. Needs root, netns, nft, curl and dig; skipped otherwise."""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid

import pytest

from conftest import build_path

HTTP, RPC, DNS = 7070, 7071, 8600


def skip_reason():
    if os.geteuid() != 0:
        return "needs root (netns, nftables, rtnetlink, cgroups)"
    for tool in ("ip", "nsenter", "nft", "curl", "dig"):
        if shutil.which(tool) is None:
            return "needs " + tool
    name = "vip-probe-%d" % os.getpid()
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return "cannot create a network namespace: " + r.stderr.strip()
    r = subprocess.run(["ip", "netns", "exec", name, "nft", "list", "tables"],
                       capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    if r.returncode != 0:
        return "nftables does not work here: " + r.stderr.strip()
    return None


SKIP = skip_reason()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


class Ns:
    def __init__(self):
        self.name = "vip-%s" % uuid.uuid4().hex[:8]
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")

    def argv(self, *a):
        # nsenter, not `ip netns exec`: that one remounts /sys, without cgroupfs.
        return ["nsenter", "--net=/var/run/netns/" + self.name] + list(a)

    def run(self, *a, check=True, timeout=30):
        return subprocess.run(self.argv(*a), capture_output=True, text=True, check=check,
                              timeout=timeout)

    def delete(self):
        # Whatever still runs in here (tasks outlive a stopped agent) is ours.
        r = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        for pid in r.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        # Our own cgroup parent (--cgroup-parent), deepest first.
        for _ in range(50):
            left = False
            for top in glob.glob("/sys/fs/cgroup/%s" % self.name) + \
                    glob.glob("/sys/fs/cgroup/*/%s" % self.name):
                for d, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(d)
                    except OSError:
                        left = True
            if not left:
                break
            time.sleep(0.1)

    def nft_tables(self):
        return self.run("nft", "list", "tables").stdout

    def lo_vips(self):
        out = self.run("ip", "-4", "addr", "show", "dev", "lo").stdout
        return re.findall(r"inet (198\.1[89]\.\d+\.\d+)/32", out)


class Agent:
    def __init__(self, ns, procs, data):
        self.ns, self.procs, self.data, self.p = ns, procs, data, None

    def start(self, mode=None):
        argv = [build_path("cmd", "clusterctl", "clusterctl"), "agent", "--dev", "--data-dir", self.data,
                "--http-port", str(HTTP), "--rpc-port", str(RPC),
                "--dns-addr", "127.0.0.1:%d" % DNS, "--log-level", "debug",
                # Its own task cgroups: an agent kills the task cgroups under its
                # parent that its replica does not know (other agents' tasks).
                "--cgroup-parent", self.ns.name]
        if mode is not None:
            argv += ["--vip-mode", mode]
        self.p = self.procs.start(self.ns.argv(*argv), name="agent")
        wait(lambda: self.api("GET", "/v2/leader")[0] == 200, "the agent's API")

    def api(self, method, path, body=None):
        a = ["curl", "-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "-X", method,
             "http://127.0.0.1:%d%s" % (HTTP, path)]
        if body is not None:
            a += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        r = self.ns.run(*a, check=False)
        text, _, code = r.stdout.rpartition("\n")
        try:
            return int(code), json.loads(text) if text.strip() else None
        except ValueError:
            return int(code or 0), text

    def tasks(self):
        code, body = self.api("GET", "/v2/apps/web/tasks")
        return body["tasks"] if code == 200 else []

    def log(self):
        return self.p.output()


def wait(pred, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


WEB = {
    "id": "/web",
    # Each task serves its own id, so a response tells which backend answered.
    "cmd": "echo $MESOS_TASK_ID > id.txt && exec python3 -m http.server -d . -p HTTP/1.1 $PORT0",
    "instances": 3, "cpus": 0.5, "mem": 64,
    # One new task at a time: while it starts, the others serve.
    "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 0.3},
    "portDefinitions": [{"port": 0, "name": "http", "labels": {"VIP_0": "/web:8080"}}],
    "labels": {"CLUSTERCTL_DRAIN_SECONDS": "3"},
    # Only healthy tasks are backends: a new task joins once it listens.
    "healthChecks": [{"protocol": "TCP", "portIndex": 0, "intervalSeconds": 1,
                      "timeoutSeconds": 1, "gracePeriodSeconds": 60}],
}


def running(agent, n, version=None):
    ts = agent.tasks()
    return (len(ts) == n and all(t["state"] == "TASK_RUNNING" for t in ts) and
            (version is None or all(t["version"] == version for t in ts)))


def vip_address(ns):
    r = ns.run("dig", "+short", "-p", str(DNS), "@127.0.0.1", "web.vip.cluster", check=False)
    return r.stdout.strip()


def fetch(ns, addr):
    r = ns.run("curl", "-s", "-m", "5", "http://%s:8080/id.txt" % addr, check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def serving(ns, addr, n=10):
    """@n requests, each on a new connection: the task ids that answered, or None
    when any failed."""
    got = [fetch(ns, addr) for _ in range(n)]
    return None if None in got else got


def rolling_restart_failures(agent, ns, addr):
    """POST restart while a curl loop runs; returns (requests, failures)."""
    stop = threading.Event()
    results, times = [], []

    def loop():
        while not stop.is_set():
            r = ns.run("curl", "-s", "-o", "/dev/null", "-m", "5", "-w", "%{http_code}",
                       "http://%s:8080/id.txt" % addr, check=False)
            results.append(r.stdout.strip())
            times.append(time.monotonic())

    old = {t["id"] for t in agent.tasks()}
    th = threading.Thread(target=loop)
    th.start()
    try:
        time.sleep(0.5)
        code, body = agent.api("POST", "/v2/apps/web/restart", {})
        assert code == 200, body
        wait(lambda: running(agent, 3) and not (old & {t["id"] for t in agent.tasks()}),
             "three new tasks replacing the old ones", timeout=90)
        time.sleep(1.0)
    finally:
        stop.set()
        th.join()
    bad = [r for r in results if r != "200"]
    if bad:
        t0 = times[0]
        print("failures at (s):", ["%.2f" % (t - t0) for t, r in zip(times, results)
                                   if r != "200"], "loop ran %.2f s" % (times[-1] - t0))
    print("restart: %d requests, failures by code: %s" % (
        len(results), {c: bad.count(c) for c in set(bad)}))
    return len(results), len(bad)


def kill_task_process(task):
    port = task["ports"][0]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"http.server" in argv and str(port).encode() in argv:
            os.kill(int(pid), signal.SIGKILL)
            return
    raise AssertionError("no process for task %s" % task["id"])


# Two requests on one keep-alive connection through the VIP, the second when told.
KEEPALIVE = """
import http.client, sys, time
for _ in range(100):  # a task that just started may not listen yet
    try:
        c = http.client.HTTPConnection(sys.argv[1], 8080, timeout=20)
        c.request("GET", "/id.txt")
        print(c.getresponse().read().decode().strip(), flush=True)
        break
    except OSError:
        time.sleep(0.1)
sys.stdin.readline()
c.request("GET", "/id.txt")
r = c.getresponse()
print(r.status, r.read().decode().strip(), flush=True)
"""


def check_drain(agent, ns, addr):
    """A task being killed leaves the VIP at once, but a connection it already has
    is served until the drain time is over (DESIGN.md §9)."""
    client = subprocess.Popen(ns.argv("python3", "-c", KEEPALIVE, addr),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        tid = client.stdout.readline().strip()
        assert tid.startswith("web."), tid
        code, body = agent.api("DELETE", "/v2/apps/web/tasks/" + tid)
        assert code == 200, body
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "200 " + tid
    finally:
        client.kill()
        client.wait()
    # It gets no new connection (its replacement may not listen yet: those
    # requests fail and are ignored here), and is stopped after the drain.
    assert tid not in [fetch(ns, addr) for _ in range(10)]
    wait(lambda: tid not in {t["id"] for t in agent.tasks()}, "the drained task to go")
    wait(lambda: running(agent, 3), "its replacement")


@pytest.fixture
def ns():
    n = Ns()
    try:
        yield n
    finally:
        n.delete()


def test_vip_agent_end_to_end(ns, procs, tmp_path):
    agent = Agent(ns, procs, str(tmp_path / "data"))
    # A leftover of an earlier crash that must go: our label on lo.
    ns.run("ip", "addr", "add", "198.19.255.254/32", "dev", "lo", "label", "lo:cm")
    ns.run("nft", "add", "table", "ip", "clusterctl")
    agent.start()
    assert "VIPs in nat mode" in agent.log()
    assert "198.19.255.254" not in ns.lo_vips()

    code, body = agent.api("POST", "/v2/apps", WEB)
    assert code == 201, body
    wait(lambda: running(agent, 3), "three running tasks")
    wait(lambda: vip_address(ns) != "", "web.vip.cluster")
    addr = vip_address(ns)
    assert re.match(r"^198\.1[89]\.\d+\.\d+$", addr), addr
    assert ns.lo_vips() == [addr]
    assert "table ip clusterctl" in ns.nft_tables()

    # nat mode: every request answered, by more than one backend.
    wait(lambda: serving(ns, addr, 3) is not None, "the VIP to answer")
    ids = serving(ns, addr, 20)
    assert ids is not None
    assert len(set(ids)) >= 2, ids
    assert set(ids) <= {t["id"] for t in agent.tasks()}

    # One backend dies: it leaves the VIP, traffic goes to the others.
    victim = agent.tasks()[0]
    kill_task_process(victim)
    wait(lambda: victim["id"] not in {t["id"] for t in agent.tasks()
                                      if t["state"] == "TASK_RUNNING"}, "the task to fail")
    ids = serving(ns, addr, 20)
    assert ids is not None and victim["id"] not in ids
    wait(lambda: running(agent, 3), "the replacement task")

    check_drain(agent, ns, addr)

    # Rolling restart under a curl loop, each request on a new connection: no
    # request fails. An old task leaves the VIP when it is to be killed and keeps
    # its open connections for the drain time (check_drain); a new one joins when
    # its health check passes, i.e. when it listens; one new task at a time keeps
    # the others serving meanwhile.
    n, failed = rolling_restart_failures(agent, ns, addr)
    print("nat mode rolling restart: %d requests, %d failed" % (n, failed))
    assert n > 20
    assert failed == 0, "%d of %d requests failed during the restart (nat)" % (failed, n)

    # kill -9 leaves the table and the addresses; a restart repairs them.
    agent.p.kill9()
    assert "table ip clusterctl" in ns.nft_tables()
    assert ns.lo_vips() == [addr]
    ns.run("ip", "addr", "add", "198.19.255.253/32", "dev", "lo", "label", "lo:cm")
    agent.start()
    wait(lambda: ns.lo_vips() == [addr], "only the current VIP on lo")
    assert "table ip clusterctl" in ns.nft_tables()
    wait(lambda: serving(ns, addr, 5) is not None, "the VIP after the restart")

    # A clean stop removes both.
    assert agent.p.stop() == 0
    assert "clusterctl" not in ns.nft_tables()
    assert ns.lo_vips() == []

    # proxy mode: the same VIP through the userspace proxy (the tasks kept running).
    agent.start(mode="proxy")
    assert "VIPs in proxy mode" in agent.log()
    wait(lambda: ns.lo_vips() == [addr], "the VIP on lo again")
    assert "clusterctl" not in ns.nft_tables()
    wait(lambda: serving(ns, addr, 3) is not None, "the proxied VIP to answer")
    ids = serving(ns, addr, 20)
    assert ids is not None and len(set(ids)) >= 2, ids

    victim = agent.tasks()[0]
    kill_task_process(victim)
    wait(lambda: victim["id"] not in {t["id"] for t in agent.tasks()
                                      if t["state"] == "TASK_RUNNING"}, "the task to fail")
    ids = serving(ns, addr, 20)
    assert ids is not None and victim["id"] not in ids
    wait(lambda: running(agent, 3), "the replacement task")

    check_drain(agent, ns, addr)
    n, failed = rolling_restart_failures(agent, ns, addr)
    print("proxy mode rolling restart: %d requests, %d failed" % (n, failed))
    assert n > 20
    assert failed == 0, "%d of %d requests failed during the restart (proxy)" % (failed, n)

    # The app goes: its VIP name is freed, DNS forgets it, lo loses the address.
    code, body = agent.api("DELETE", "/v2/apps/web")
    assert code == 200, body
    wait(lambda: vip_address(ns) == "", "web.vip.cluster to go")
    wait(lambda: ns.lo_vips() == [], "the address to leave lo")
    assert agent.p.stop() == 0
    assert ns.lo_vips() == []


def test_vip_address_label_may_not_take_a_named_vips_address(ns, procs, tmp_path):
    agent = Agent(ns, procs, str(tmp_path / "data"))
    agent.start(mode="proxy")
    app = dict(WEB, instances=0)
    code, body = agent.api("POST", "/v2/apps", app)
    assert code == 201, body
    wait(lambda: vip_address(ns) != "", "web.vip.cluster")
    addr = vip_address(ns)
    other = {"id": "/other", "cmd": "sleep 1000", "instances": 0, "cpus": 0.01, "mem": 16,
             "portDefinitions": [{"port": 0, "labels": {"VIP_0": "%s:80" % addr}}]}
    code, body = agent.api("POST", "/v2/apps", other)
    assert code >= 400, body
    text = json.dumps(body)
    assert "VIP_0" in text and addr in text and "/web" in text, text
    assert agent.p.stop() == 0


def test_vip_without_health_checks_waits_until_the_task_listens(ns, procs, tmp_path):
    """An app without health checks: a task joins its VIP once this node has seen it
    accept a connection. A task that never listens is never a backend (and says so
    in GET /v1/vips); a rolling restart in nat mode, which cannot retry a refused
    connection elsewhere, loses no request."""
    agent = Agent(ns, procs, str(tmp_path / "data"))
    agent.start()
    assert "VIPs in nat mode" in agent.log()
    web = {k: v for k, v in WEB.items() if k != "healthChecks"}
    # The first task listens only after 3 s, the later ones at once.
    web["cmd"] = ("echo $MESOS_TASK_ID > id.txt && "
                  "if [ ! -e ../slow-done ]; then touch ../slow-done; sleep 3; fi && "
                  "exec python3 -m http.server -d . -p HTTP/1.1 $PORT0")
    web["instances"] = 1
    web["cpus"] = 0.2  # 3 tasks, one more during the restart, and the deaf one
    deaf = {"id": "/deaf", "cmd": "exec sleep 600", "cpus": 0.1, "mem": 16,
            "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/deaf:9090"}}]}
    for app in (web, deaf):
        code, body = agent.api("POST", "/v2/apps", app)
        assert code == 201, body

    def view(name):
        code, body = agent.api("GET", "/v1/vips")
        assert code == 200, body
        return next((x for x in body["vips"] if x["name"] == name), None)

    # The deaf task runs but never listens: it is never a backend, and says why.
    wait(lambda: (view("deaf") or {}).get("backends"), "the deaf VIP's task")
    d = view("deaf")
    assert d["eligibleBackends"] == 0, d
    assert [b["reason"] for b in d["backends"]] == ["not yet listening"], d
    wait(lambda: running(agent, 1), "the web task")
    wait(lambda: vip_address(ns) != "", "web.vip.cluster")
    addr = vip_address(ns)
    # The web task runs but does not listen for 3 s: it waits outside the VIP.
    w = view("web")
    if w["eligibleBackends"] == 0:
        assert [b["reason"] for b in w["backends"]] == ["not yet listening"], w
    wait(lambda: view("web")["eligibleBackends"] == 1, "the web task to listen", 20)
    assert fetch(ns, addr) is not None
    assert view("deaf")["eligibleBackends"] == 0

    code, body = agent.api("PUT", "/v2/apps/web", dict(web, instances=3))
    assert code == 200, body
    wait(lambda: running(agent, 3) and view("web")["eligibleBackends"] == 3,
         "three listening backends")
    n, failed = rolling_restart_failures(agent, ns, addr)
    print("nat mode rolling restart without health checks: %d requests, %d failed"
          % (n, failed))
    assert n > 20
    assert failed == 0, "%d of %d requests failed during the restart" % (failed, n)
    assert agent.p.stop() == 0


def test_legacy_minuteman_app_label_vip(ns, procs, tmp_path):
    """The legacy Minuteman app label "vip_PORT0": "tcp://a.b.c.d:port" (DC/OS 1.7)
    gives the app's port 0 an address VIP, served like a VIP_0 port label; a malformed
    one is refused naming the label."""
    agent = Agent(ns, procs, str(tmp_path / "data"))
    agent.start()
    app = {"id": "/web", "cpus": 0.2, "mem": 64, "instances": 2,
           "cmd": WEB["cmd"], "ports": [0],
           "labels": {"vip_PORT0": "tcp://198.18.200.7:80"}}
    bad = dict(app, id="/bad", labels={"VIP_PORT0": "198.18.200.8:80"})
    code, body = agent.api("POST", "/v2/apps", bad)
    assert code == 422, body
    assert body["details"][0]["path"] == "/labels/VIP_PORT0", body
    code, body = agent.api("POST", "/v2/apps", app)
    assert code == 201, body
    wait(lambda: running(agent, 2), "two running tasks")

    def served():
        r = ns.run("curl", "-s", "-m", "5", "http://198.18.200.7:80/id.txt", check=False)
        return r.stdout.strip() if r.returncode == 0 else None

    wait(lambda: served() is not None, "the legacy VIP to answer")
    got = {served() for _ in range(12)}
    assert got <= {t["id"] for t in agent.tasks()} and len(got) == 2, got
    code, body = agent.api("GET", "/v1/vips")
    v = [x for x in body["vips"] if x["address"] == "198.18.200.7"]
    assert len(v) == 1 and v[0]["port"] == 80 and v[0]["name"] is None, body
    assert agent.p.stop() == 0
