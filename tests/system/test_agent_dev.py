"""One node end to end (the single-node issue's "done when"): a real
`clusterctl agent --dev` runs Marathon apps in cgroups and PID namespaces, checked
from /proc and cgroupfs, scales, stops, survives kill -9 of the daemon, rejects
invalid apps naming the fields, and reports OOM kills. Needs root (cgroups)."""
import json
import os
import time
import urllib.error
import urllib.request

import pytest

from conftest import free_port, marathon_example, wait_for_port


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for cgroups")


class Agent:
    def __init__(self, procs, bin_, tmp_path):
        self.procs = procs
        self.bin = bin_
        self.dir = str(tmp_path / "data")
        self.http = free_port()
        self.rpc = free_port()
        self.dns = free_port()
        self.p = None

    def start(self):
        self.p = self.procs.start(
            [self.bin, "agent", "--dev", "--data-dir", self.dir, "--http-port", str(self.http),
             "--rpc-port", str(self.rpc), "--dns-addr", "127.0.0.1:%d" % self.dns],
            name="agent")
        wait_for_port("127.0.0.1", self.http, proc=self.p.p)
        self.wait(lambda: self.get("/v2/leader")[0] == 200, "a leader")

    def req(self, method, path, body=None):
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = urllib.request.Request("http://127.0.0.1:%d%s" % (self.http, path), data=data,
                                   method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(r, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw.strip().startswith(b"{") else raw
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw

    def get(self, path):
        return self.req("GET", path)

    def tasks(self, app):
        code, body = self.get("/v2/apps/%s/tasks" % app.strip("/"))
        return body["tasks"] if code == 200 else []

    def wait(self, pred, what, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.05)
        raise AssertionError("timed out waiting for " + what)

    def running(self, app, n):
        self.wait(lambda: sum(t["state"] == "TASK_RUNNING" for t in self.tasks(app)) == n and
                  len(self.tasks(app)) == n, "%d running tasks of %s" % (n, app))


def task_pids():
    """pid of each task's command, by the task id in its cgroup path."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cgroup" % pid) as f:
                cg = f.read()
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        for line in cg.splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3 and "/clusterctl/task-" in parts[2] and cmd.startswith("sleep"):
                found[parts[2].rsplit("/task-", 1)[1]] = int(pid)
    return found


def test_example_app_runs_isolated_scales_and_survives_restart(procs, clusterctl_bin, tmp_path):
    a = Agent(procs, clusterctl_bin, tmp_path)
    a.start()
    with open(marathon_example("app-minimal-sleep.json"), "rb") as f:
        code, body = a.req("POST", "/v2/apps", f.read())
    assert code == 201, body
    a.running("/simple", 2)

    # Each task in its own PID namespace and cgroup, seen from /proc and cgroupfs.
    # TASK_RUNNING means launched: the command may not have exec'd `sleep` yet.
    ids = {t["id"] for t in a.tasks("/simple")}
    a.wait(lambda: set(task_pids()) == ids, "both tasks' sleep in /proc")
    pids = task_pids()
    assert set(pids) == ids
    my_pidns = os.readlink("/proc/self/ns/pid")
    for tid, pid in pids.items():
        assert os.readlink("/proc/%d/ns/pid" % pid) != my_pidns
        with open("/proc/%d/status" % pid) as f:
            nspid = [l for l in f if l.startswith("NSpid:")][0].split()
        assert len(nspid) == 3  # host pid, then its pid inside the task's namespace
        procs_file = "/sys/fs/cgroup/memory/clusterctl/task-%s/cgroup.procs" % tid
        if not os.path.exists(procs_file):  # cgroup v2
            procs_file = "/sys/fs/cgroup/clusterctl/task-%s/cgroup.procs" % tid
        with open(procs_file) as f:
            assert str(pid) in f.read().split()

    code, _ = a.req("PUT", "/v2/apps/simple", {"id": "/simple", "instances": 5, "cmd": "sleep 1000",
                                               "cpus": 0.1, "mem": 16, "disk": 0})
    assert code == 200
    a.running("/simple", 5)
    a.wait(lambda: len(task_pids()) == 5, "five tasks' sleep in /proc")

    # kill -9 of the daemon leaves the tasks alone; a new daemon re-adopts them.
    before = task_pids()
    a.p.kill9()
    time.sleep(0.5)
    assert task_pids() == before
    a.start()
    a.running("/simple", 5)
    assert task_pids() == before

    code, _ = a.req("PUT", "/v2/apps/simple", {"id": "/simple", "instances": 0, "cmd": "sleep 1000",
                                               "cpus": 0.1, "mem": 16, "disk": 0})
    assert code == 200
    a.wait(lambda: not task_pids(), "the tasks to stop")
    code, _ = a.req("DELETE", "/v2/apps/simple")
    assert code == 200
    a.wait(lambda: a.get("/v2/apps/simple")[0] == 404, "the app to go")


def test_invalid_and_unsupported_examples_are_rejected(procs, clusterctl_bin, tmp_path):
    a = Agent(procs, clusterctl_bin, tmp_path)
    a.start()
    with open(marathon_example("app-kitchen-sink-rest-api-doc-example.json"), "rb") as f:
        code, body = a.req("POST", "/v2/apps", f.read())
    assert code == 422
    paths = {d["path"] for d in body["details"]}
    assert paths, body
    with open(marathon_example("app-docker-host-tcp-hc-fixed-port.json"), "rb") as f:
        code, body = a.req("POST", "/v2/apps", f.read())
    assert code == 422
    assert "unsupported" in json.dumps(body).lower()
    code, body = a.req("POST", "/v2/apps", b"{not json")
    assert code == 400
    code, body = a.req("POST", "/v2/apps", {"id": "/x", "cmd": "true", "cpus": -1})
    assert code == 422 and any(d["path"] == "/cpus" for d in body["details"])
    assert a.get("/v2/apps")[1]["apps"] == []


def test_oom_is_reported(procs, clusterctl_bin, tmp_path):
    a = Agent(procs, clusterctl_bin, tmp_path)
    a.start()
    app = {"id": "/hog", "instances": 1, "mem": 32, "cpus": 0.1, "backoffSeconds": 600,
           "cmd": "head -c 200000000 /dev/zero | tail"}
    code, body = a.req("POST", "/v2/apps", app)
    assert code == 201, body

    def last_failure():
        code, body = a.get("/v2/apps/hog")
        return body["app"].get("lastTaskFailure") if code == 200 else None

    a.wait(lambda: last_failure() is not None, "the task to fail")
    failure = last_failure()
    assert failure["state"] == "TASK_FAILED"
    assert "OOM" in failure["message"], failure
    a.req("DELETE", "/v2/apps/hog")


def test_status_says_why_instances_wait(procs, clusterctl_bin, tmp_path):
    import subprocess
    a = Agent(procs, clusterctl_bin, tmp_path)
    a.start()
    code, body = a.req("POST", "/v2/apps", {"id": "/huge", "cmd": "sleep 1000", "instances": 1,
                                            "cpus": 0.1, "mem": 10000000})
    assert code == 201, body

    def reason():
        code, body = a.get("/v2/queue")
        items = [q for q in body["queue"] if q["app"]["id"] == "/huge"] if code == 200 else []
        return items[0].get("reason") if items else None

    a.wait(lambda: reason() is not None, "a reason in /v2/queue")
    assert reason() == "1 of 1 node lacks memory"
    r = subprocess.run([clusterctl_bin, "status", "huge", "--addr", "127.0.0.1:%d" % a.http],
                       capture_output=True, text=True, timeout=10)
    assert "not placed: 1 of 1 node lacks memory" in r.stdout, r.stdout + r.stderr
    a.req("DELETE", "/v2/apps/huge")
