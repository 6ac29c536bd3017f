"""Health and readiness checks end to end (issue 9, items 1-2) on a real
`clusterctl agent --dev`: checks run by the node's executor, only their
transitions reach the log, an unhealthy task leaves DNS, a task past
maxConsecutiveFailures is killed by its node and replaced with the launch backoff,
COMMAND checks run inside the task's namespaces and cgroup with their timeout
enforced, and readiness checks with httpStatusCodesForReady and
preserveLastResponse. Needs root (cgroups, namespaces) and dig.

Tasks see a private /tmp, so the server script travels in the app's env; a task
turns sick when the test creates a file in its sandbox (its working directory)."""
import datetime
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import free_port, marathon_example, wait_for_port

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for cgroups"),
    pytest.mark.skipif(shutil.which("dig") is None, reason="needs dig"),
]

# /health: 500 when ./fail exists; /ready: the status in ./ready (else 503).
SERVER = r'''
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ready":
            try:
                code = int(open("ready").read().strip())
            except OSError:
                code = 503
            body = b"ready %d\n" % code
        else:
            code = 500 if os.path.exists("fail") else 200
            body = b"sick\n" if code == 500 else b"ok\n"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), H)
if os.environ.get("HEALTH_TLS"):
    import ssl
    with open("tls.pem", "w") as f:
        f.write(os.environ["HEALTH_TLS"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain("tls.pem")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
'''

WAIT = 90.0  # generous: the machine is shared; nothing here measures time


class Agent:
    def __init__(self, procs, bin_, tmp_path):
        self.procs = procs
        self.bin = bin_
        self.dir = str(tmp_path / "data")
        self.http = free_port()
        self.rpc = free_port()
        self.dns = free_port()
        self.cgroup_parent = "health-test-%d" % os.getpid()

    def start(self):
        self.p = self.procs.start(
            [self.bin, "agent", "--dev", "--data-dir", self.dir, "--http-port", str(self.http),
             "--rpc-port", str(self.rpc), "--dns-addr", "127.0.0.1:%d" % self.dns,
             "--cgroup-parent", self.cgroup_parent], name="agent")
        wait_for_port("127.0.0.1", self.http, proc=self.p.p)
        self.wait(lambda: self.get("/v2/leader")[0] == 200, "a leader")

    def req(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
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

    def app(self, app_id):
        code, body = self.get("/v2/apps/%s?embed=app.lastTaskFailure" % app_id.strip("/"))
        assert code == 200, body
        return body["app"]

    def tasks(self, app_id):
        return self.app(app_id)["tasks"]

    def wait(self, pred, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = pred()
            if got:
                return got
            time.sleep(0.1)
        raise AssertionError("timed out waiting for " + what)

    def rows(self, app_id):
        """(id, health, ready) of the app's tasks in this node's replica."""
        db = sqlite3.connect("file:%s/state.db?mode=ro" % self.dir, uri=True, timeout=10)
        try:
            return db.execute("SELECT id, health, ready FROM tasks WHERE app = ? "
                              "ORDER BY id", (app_id,)).fetchall()
        finally:
            db.close()

    def sandbox(self, task_id):
        return os.path.join(self.dir, "tasks", task_id)

    def srv(self, port):
        out = subprocess.run(["dig", "+short", "+tries=2", "+time=2", "-p", str(self.dns),
                              "@127.0.0.1", "SRV", "_%s._tcp.cluster" % port],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, out.stderr
        return sorted(int(line.split()[2]) for line in out.stdout.split("\n") if line.strip())

    def cli(self, *args):
        out = subprocess.run([self.bin] + list(args) + ["--addr", "127.0.0.1:%d" % self.http],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def cleanup(self):
        """Delete every app and wait until its tasks are gone, then drop our cgroups."""
        code, body = self.get("/v2/apps")
        if code == 200:
            for a in body["apps"]:
                self.req("DELETE", "/v2/apps/%s" % a["id"].strip("/"))
            try:
                self.wait(lambda: self.get("/v2/tasks")[1].get("tasks") == [], "no tasks",
                          timeout=60)
            finally:
                self.p.stop()
        for ctl in os.listdir("/sys/fs/cgroup"):
            d = os.path.join("/sys/fs/cgroup", ctl, self.cgroup_parent)
            if os.path.isdir(d):
                for sub in os.listdir(d):
                    if os.path.isdir(os.path.join(d, sub)):
                        try:
                            os.rmdir(os.path.join(d, sub))
                        except OSError:
                            pass
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        d = os.path.join("/sys/fs/cgroup", self.cgroup_parent)
        if os.path.isdir(d):
            try:
                os.rmdir(d)
            except OSError:
                pass


@pytest.fixture
def agent(procs, clusterctl_bin, tmp_path):
    a = Agent(procs, clusterctl_bin, tmp_path)
    a.start()
    yield a
    a.cleanup()


def web_app(app_id, instances, checks, readiness=None, extra_args=""):
    app = {
        "id": app_id,
        "cmd": 'exec python3 -c "$HEALTH_SERVER" $PORT0 %s' % extra_args,
        "env": {"HEALTH_SERVER": SERVER},
        "instances": instances,
        "cpus": 0.05,
        "mem": 64,
        "portDefinitions": [{"port": 0, "name": "http"}],
        "healthChecks": checks,
    }
    if readiness is not None:
        app["readinessChecks"] = readiness
    return app


def post(agent, app):
    code, body = agent.req("POST", "/v2/apps", app)
    assert code == 201, body


def healthy_tasks(agent, app_id, n):
    def ok():
        ts = agent.tasks(app_id)
        good = [t for t in ts if t["state"] == "TASK_RUNNING" and t["healthCheckResults"] and
                all(r["alive"] for r in t["healthCheckResults"])]
        return good if len(good) == n and len(ts) == n else None
    return agent.wait(ok, "%d healthy tasks of %s" % (n, app_id))


def task_port(task):
    return task["ports"][0]


def test_http_check_unhealthy_leaves_dns_and_comes_back(agent):
    post(agent, web_app("/hsick", 2, [
        {"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 30,
         "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 0},
        {"protocol": "TCP", "portName": "http", "intervalSeconds": 1, "timeoutSeconds": 2,
         "maxConsecutiveFailures": 0}]))
    tasks = healthy_tasks(agent, "/hsick", 2)
    app = agent.app("/hsick")
    assert (app["tasksHealthy"], app["tasksUnhealthy"]) == (2, 0)
    for t in tasks:
        assert len(t["healthCheckResults"]) == 2
        for r in t["healthCheckResults"]:
            assert r["consecutiveFailures"] == 0 and r["firstSuccess"] and r["lastSuccess"]
            assert r["lastFailureCause"] is None and r["instanceId"] == t["id"]
    # The row fields deployments read: health, and ready (no readiness checks: at once).
    assert [r[1:] for r in agent.rows("/hsick")] == [("healthy", 1), ("healthy", 1)]
    ports = sorted(task_port(t) for t in tasks)
    agent.wait(lambda: agent.srv("hsick") == ports, "both tasks in DNS")
    assert "healthy" in agent.cli("ps", "hsick")

    sick, well = tasks
    open(os.path.join(agent.sandbox(sick["id"]), "fail"), "w").close()

    def unhealthy():
        a = agent.app("/hsick")
        return a if (a["tasksHealthy"], a["tasksUnhealthy"]) == (1, 1) else None
    app = agent.wait(unhealthy, "one unhealthy task")
    by_id = {t["id"]: t for t in app["tasks"]}
    http_result, tcp_result = by_id[sick["id"]]["healthCheckResults"]
    assert http_result["alive"] is False
    assert http_result["consecutiveFailures"] >= 1 and http_result["lastFailure"]
    assert http_result["lastFailureCause"] == "HTTP 500 on /health"
    assert tcp_result["alive"] is True
    # It keeps running (maxConsecutiveFailures 0 never kills an HTTP check) but
    # leaves DNS; the healthy one stays.
    agent.wait(lambda: agent.srv("hsick") == [task_port(well)], "the sick task out of DNS")
    assert by_id[sick["id"]]["state"] == "TASK_RUNNING"
    status = agent.cli("status", "hsick")
    assert "unhealthy: HTTP 500 on /health" in status
    assert "1 healthy, 1 unhealthy" in status

    os.unlink(os.path.join(agent.sandbox(sick["id"]), "fail"))
    healthy_tasks(agent, "/hsick", 2)
    agent.wait(lambda: agent.srv("hsick") == ports, "the task back in DNS")
    assert {t["id"] for t in agent.tasks("/hsick")} == {sick["id"], well["id"]}


def test_task_past_max_failures_is_killed_and_replaced_with_backoff(agent):
    post(agent, web_app("/hkill", 1, [
        {"protocol": "HTTP", "path": "/health", "gracePeriodSeconds": 30, "intervalSeconds": 1,
         "timeoutSeconds": 2, "maxConsecutiveFailures": 3}]))
    (first,) = healthy_tasks(agent, "/hkill", 1)
    open(os.path.join(agent.sandbox(first["id"]), "fail"), "w").close()

    def failed():
        f = agent.app("/hkill").get("lastTaskFailure")
        return f if f is not None and f["taskId"] == first["id"] else None
    failure = agent.wait(failed, "the sick task's failure")
    assert failure["state"] == "TASK_FAILED"
    assert failure["message"] == "health check failed: HTTP 500 on /health"

    # Replaced by the leader like any failed task, after the launch backoff
    # (backoffSeconds 1: the replacement is staged at least 1 s after the failure).
    (second,) = healthy_tasks(agent, "/hkill", 1)
    assert second["id"] != first["id"]
    staged = datetime.datetime.fromisoformat(second["stagedAt"].replace("Z", "+00:00"))
    failed_at = datetime.datetime.fromisoformat(failure["timestamp"].replace("Z", "+00:00"))
    assert (staged - failed_at).total_seconds() >= 1.0
    # The killed task's process is gone: nothing listens on its port any more
    # (unless the replacement got the same port).
    if task_port(second) != task_port(first):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", task_port(first)), timeout=2).close()


def test_command_check_runs_inside_the_task(agent):
    marker = "hcmd-marker-%d" % os.getpid()
    post(agent, web_app("/hcmd", 1, [
        {"protocol": "COMMAND",
         "command": {"value": "readlink /proc/self/ns/pid > nscheck; "
                              "readlink /proc/self/ns/mnt > mntcheck; "
                              "cat /proc/self/cgroup > cgcheck; "
                              "echo \"$MESOS_TASK_ID $PORT0\" > envcheck; "
                              "ps ax | grep -v grep | grep -q %s && test ! -e fail" % marker},
         "gracePeriodSeconds": 30, "intervalSeconds": 1, "timeoutSeconds": 5,
         "delaySeconds": 0, "maxConsecutiveFailures": 3}], extra_args=marker))
    (t,) = healthy_tasks(agent, "/hcmd", 1)
    box = agent.sandbox(t["id"])
    # The task's server, seen from the host by its marker.
    server = None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if marker.encode() in f.read() and b"python3" in open(
                        "/proc/%s/cmdline" % pid, "rb").read():
                    server = pid
        except OSError:
            pass
    assert server is not None
    with open(os.path.join(box, "nscheck")) as f:
        assert f.read().strip() == os.readlink("/proc/%s/ns/pid" % server)
    assert os.readlink("/proc/%s/ns/pid" % server) != os.readlink("/proc/self/ns/pid")
    with open(os.path.join(box, "mntcheck")) as f:
        assert f.read().strip() == os.readlink("/proc/%s/ns/mnt" % server)
    with open(os.path.join(box, "cgcheck")) as f:
        assert "%s/task-%s" % (agent.cgroup_parent, t["id"]) in f.read()
    with open(os.path.join(box, "envcheck")) as f:
        assert f.read().split() == [t["id"], str(task_port(t))]

    open(os.path.join(box, "fail"), "w").close()
    failure = agent.wait(lambda: agent.app("/hcmd").get("lastTaskFailure"), "the failure")
    assert failure["taskId"] == t["id"]
    assert failure["message"] == "health check failed: command exited with status 1"


def test_command_check_timeout_kills_the_command(agent):
    token = "61.%d" % os.getpid()  # a sleep nobody else runs
    post(agent, web_app("/hslow", 1, [
        {"protocol": "COMMAND", "command": {"value": "sleep %s" % token},
         "gracePeriodSeconds": 0, "intervalSeconds": 3, "timeoutSeconds": 1, "delaySeconds": 0,
         "maxConsecutiveFailures": 2}]))

    def failed():
        f = agent.app("/hslow").get("lastTaskFailure")
        return f if f is not None and f["message"].startswith("health check failed") else None
    failure = agent.wait(failed, "a timed-out check to kill the task")
    assert failure["message"] == "health check failed: command timed out after 1s"

    def sleepers():
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if f.read().replace(b"\0", b" ").strip() == ("sleep %s" % token).encode():
                        found.append(pid)
            except OSError:
                pass
        return found
    # The replacement may be running its own check right now; every one of them
    # is killed at its timeout, so at some point none is left.
    agent.req("DELETE", "/v2/apps/hslow")
    agent.wait(lambda: agent.get("/v2/tasks")[1].get("tasks") == [], "the app's tasks gone")
    agent.wait(lambda: sleepers() == [], "no check command left", timeout=30)


def test_readiness_check_with_status_codes_and_last_response(agent):
    post(agent, web_app("/hready", 1, [], readiness=[
        {"name": "warmup", "protocol": "HTTP", "path": "/ready", "portName": "http",
         "intervalSeconds": 2, "timeoutSeconds": 1,
         "httpStatusCodesForReady": [200, 302], "preserveLastResponse": True}]))

    def result():
        a = agent.app("/hready")
        rs = a.get("readinessCheckResults") or []
        return rs[0] if len(rs) == 1 and len(a["tasks"]) == 1 else None
    agent.wait(lambda: (agent.app("/hready")["tasks"] or [{}])[0].get("state") == "TASK_RUNNING",
               "the task running")
    (t,) = agent.tasks("/hready")
    # Not ready while /ready answers 503; 302 is in httpStatusCodesForReady.
    time.sleep(2)
    r = result()
    assert r is None or r["ready"] is False
    assert agent.rows("/hready") == [(t["id"], None, 0)]
    with open(os.path.join(agent.sandbox(t["id"]), "ready"), "w") as f:
        f.write("302\n")
    r = agent.wait(lambda: (lambda x: x if x is not None and x["ready"] else None)(result()),
                   "the task ready")
    assert r["name"] == "warmup" and r["taskId"] == t["id"]
    assert agent.rows("/hready") == [(t["id"], None, 1)]
    assert r["lastResponse"] == {"status": 302, "contentType": "text/plain",
                                 "body": "ready 302\n"}


def test_example_command_check_sees_the_task_processes(agent):
    """shared/examples: a COMMAND check with `ps ax` (Mesos runs it in the task's
    container) is healthy once it sees the task's openssl."""
    with open(marathon_example("app-dotted-path-id-command-hc.json")) as f:
        app = json.load(f)
    app["cpus"] = 0.05  # the example burns what it gets
    post(agent, app)
    (t,) = healthy_tasks(agent, "/v1.23/stress-test", 1)
    (r,) = t["healthCheckResults"]
    assert r["alive"] is True and r["consecutiveFailures"] == 0


def test_https_checks_do_not_verify_the_certificate(agent, tmp_path):
    """HTTPS and MESOS_HTTPS health checks and an HTTPS readiness check against a
    task with a self-signed certificate (Marathon does not verify it either)."""
    key = tmp_path / "tls.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=health-test",
                    "-days", "1", "-keyout", str(key), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    pem = (tmp_path / "cert.pem").read_text() + key.read_text()
    app = web_app("/hhttps", 1, [
        {"protocol": "HTTPS", "path": "/health", "gracePeriodSeconds": 30,
         "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 0},
        {"protocol": "MESOS_HTTPS", "path": "/health", "gracePeriodSeconds": 30,
         "intervalSeconds": 1, "timeoutSeconds": 2, "delaySeconds": 0,
         "maxConsecutiveFailures": 3}],
        readiness=[{"protocol": "HTTPS", "path": "/ready", "portName": "http",
                    "intervalSeconds": 2, "timeoutSeconds": 1,
                    "httpStatusCodesForReady": [200], "preserveLastResponse": True}])
    app["env"]["HEALTH_TLS"] = pem
    post(agent, app)
    (t,) = healthy_tasks(agent, "/hhttps", 1)
    assert len(t["healthCheckResults"]) == 2
    with open(os.path.join(agent.sandbox(t["id"]), "ready"), "w") as f:
        f.write("200\n")

    def ready():
        rs = agent.app("/hhttps").get("readinessCheckResults") or []
        return rs[0] if len(rs) == 1 and rs[0]["ready"] else None
    r = agent.wait(ready, "the HTTPS readiness check")
    assert r["lastResponse"]["status"] == 200 and r["lastResponse"]["body"] == "ready 200\n"
