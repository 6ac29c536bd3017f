"""GET /v2/events against a real `clusterctl agent --dev`: a streaming client sees an
app's whole life (run, scale, a task killed, delete) as Marathon's events, in log
order and in Marathon's shapes; the event_type filter; subscribers counted and
freed."""
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

import conftest
from conftest import free_port, wait_for_port, wait_until

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def agent(procs, tmp_path, clusterctl_bin):
    http_port, rpc, dns = free_port(), free_port(), free_port()
    p = procs.start([clusterctl_bin, "agent", "--dev", "--name", "events-node",
                     "--data-dir", str(tmp_path / "data"),
                     "--http-port", str(http_port), "--rpc-port", str(rpc),
                     "--dns-addr", "127.0.0.1:%d" % dns], name="agent")
    wait_for_port("127.0.0.1", http_port, timeout=15, proc=p.p)
    addr = "127.0.0.1:%d" % http_port
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the API answers once raft elected itself
        try:
            with urllib.request.urlopen("http://%s/v2/leader" % addr, timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    yield addr
    # Leave no task behind: delete what the test left (tasks outlive the agent).
    try:
        _, apps = api(addr, "GET", "/v2/apps")
        for a in apps.get("apps", []):
            api(addr, "DELETE", "/v2/apps%s?force=true" % a["id"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            _, t = api(addr, "GET", "/v2/tasks")
            if not t.get("tasks"):
                break
            time.sleep(0.2)
    except (urllib.error.URLError, OSError, ValueError):
        pass


def api(addr, method, path, body=None):
    return conftest.api(addr, method, path, body, timeout=30)


def api_dep(addr, method, path, body=None):
    """A write: its status, body and the Marathon-Deployment-Id it started."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://%s%s" % (addr, path), data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return (r.status, json.loads(r.read() or b"null"),
                    r.headers.get("Marathon-Deployment-Id"))
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), None


def metric(addr, name):
    with urllib.request.urlopen("http://%s/metrics" % addr, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
    raise AssertionError("no metric %s" % name)


class Stream:
    """An SSE subscriber on its own thread: frames parsed as they arrive."""

    def __init__(self, addr, query=""):
        host, port = addr.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.conn.request("GET", "/v2/events" + query,
                          headers={"Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = dict(self.resp.getheaders())
        self.events = []  # (type, data dict), in arrival order
        self.comments = 0
        self.lock = threading.Lock()
        self.buf = b""
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        try:
            while True:
                data = self.resp.read1(65536)
                if not data:
                    return
                self._feed(data)
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            return  # closed (http.client may trip over the socket closed under it)

    def _feed(self, data):
        self.buf += data
        while b"\n\n" in self.buf:
            frame, self.buf = self.buf.split(b"\n\n", 1)
            lines = frame.decode().split("\n")
            if lines[0].startswith(":"):
                with self.lock:
                    self.comments += 1
                continue
            assert len(lines) == 2, frame
            assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
            etype = lines[0][len("event: "):]
            d = json.loads(lines[1][len("data: "):])
            with self.lock:
                self.events.append((etype, d))

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def wait_for(self, pred, what, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = self.snapshot()
            if pred(evs):
                return evs
            time.sleep(0.05)
        raise AssertionError("no %s in %d events: %s" % (
            what, len(self.snapshot()),
            [(t, d.get("taskStatus") or d.get("id") or "") for t, d in self.snapshot()]))

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        self.th.join(5)


def index_of(evs, pred, start=0):
    for i in range(start, len(evs)):
        if pred(evs[i]):
            return i
    return -1


def is_status(task=None, status=None, app=None):
    def f(e):
        t, d = e
        return (t == "status_update_event" and (task is None or d["taskId"] == task)
                and (status is None or d["taskStatus"] == status)
                and (app is None or d["appId"] == app))
    return f


def is_dep_end(dep_id):
    return lambda e: e[0] in ("deployment_success", "deployment_failed") and e[1]["id"] == dep_id


def check_shapes(evs):
    """Every event: eventType matches the SSE name, an ISO timestamp, and
    Marathon's field names for its type."""
    fields = {
        "event_stream_attached": {"remoteAddress"},
        "api_post_event": {"clientIp", "uri", "appDefinition"},
        "status_update_event": {"slaveId", "taskId", "taskStatus", "message", "appId",
                                "host", "ipAddresses", "ports", "version"},
        "instance_changed_event": {"instanceId", "condition", "runSpecId", "agentId",
                                   "host", "runSpecVersion"},
        "app_terminated_event": {"appId"},
        "deployment_info": {"plan", "currentStep"},
        "deployment_step_success": {"plan", "currentStep"},
        "deployment_success": {"id", "plan"},
    }
    for t, d in evs:
        assert d["eventType"] == t
        assert ISO.match(d["timestamp"]), d
        if t in fields:
            assert fields[t] | {"eventType", "timestamp"} <= set(d), (t, d)
        if t.startswith("deployment_"):
            plan = d["plan"]
            assert {"id", "steps", "version"} <= set(plan)
            for st in plan["steps"]:
                assert all({"action", "app"} <= set(a) for a in st["actions"])


def test_events_show_an_apps_whole_life(agent):
    s = Stream(agent)
    try:
        assert s.status == 200
        assert s.headers["Content-Type"] == "text/event-stream"
        evs = s.wait_for(lambda e: e, "attach")
        assert evs[0][0] == "event_stream_attached"
        assert evs[0][1]["remoteAddress"] == "127.0.0.1"
        assert metric(agent, "clusterctl_events_subscribers") == 1

        # Run it.
        st, res, dep1 = api_dep(agent, "POST", "/v2/apps",
                                {"id": "/evt", "cmd": "sleep 1000", "instances": 1,
                                 "cpus": 0.05, "mem": 32})
        assert st == 201 and dep1, res
        evs = s.wait_for(lambda e: index_of(e, is_dep_end(dep1)) >= 0, "first deployment end")
        post = index_of(evs, lambda e: e[0] == "api_post_event")
        assert post > 0
        p = evs[post][1]
        assert p["clientIp"] == "127.0.0.1" and p["uri"] == "/v2/apps"
        assert p["appDefinition"]["id"] == "/evt" and p["appDefinition"]["instances"] == 1
        info = index_of(evs, lambda e: e[0] == "deployment_info" and e[1]["plan"]["id"] == dep1)
        staging = index_of(evs, is_status(status="TASK_STAGING", app="/evt"))
        running = index_of(evs, is_status(status="TASK_RUNNING", app="/evt"))
        end = index_of(evs, is_dep_end(dep1))
        assert 0 < post < info < staging < running < end, evs
        assert evs[end][0] == "deployment_success"
        assert evs[info][1]["currentStep"]["actions"][0] == {"action": "StartApplication",
                                                             "app": "/evt"}
        task1 = evs[staging][1]
        assert task1["slaveId"] == "events-node" and task1["host"] == "127.0.0.1"
        assert isinstance(task1["ports"], list) and task1["message"] == ""
        assert task1["ipAddresses"] == [{"ipAddress": "127.0.0.1", "protocol": "IPv4"}]
        t1 = task1["taskId"]
        # Each status update is followed by the instance's condition.
        nxt = evs[staging + 1]
        assert nxt[0] == "instance_changed_event"
        assert nxt[1]["instanceId"] == t1 and nxt[1]["condition"] == "Staging"
        assert nxt[1]["runSpecId"] == "/evt" and nxt[1]["agentId"] == "events-node"

        # Scale it to two.
        st, res = api(agent, "PUT", "/v2/apps/evt", {"instances": 2})
        assert st == 200, res
        dep2 = res["deploymentId"]
        evs = s.wait_for(lambda e: index_of(e, is_dep_end(dep2)) >= 0, "scale deployment end")
        start = index_of(evs, lambda e: e[0] == "deployment_info" and e[1]["plan"]["id"] == dep2)
        assert start > end
        assert evs[start][1]["currentStep"]["actions"][0]["action"] == "ScaleApplication"
        running2 = [d["taskId"] for t, d in evs[start:] if t == "status_update_event"
                    and d["taskStatus"] == "TASK_RUNNING"]
        assert len(running2) == 1 and running2[0] != t1
        t2 = running2[0]
        assert evs[index_of(evs, is_dep_end(dep2))][0] == "deployment_success"

        # Kill the first task: killing, killed, and a replacement.
        mark = len(evs)
        st, res = api(agent, "DELETE", "/v2/apps/evt/tasks/%s" % t1)
        assert st == 200, res
        evs = s.wait_for(lambda e: index_of(e, is_status(t1, "TASK_KILLED"), mark) >= 0,
                         "the task killed")
        killing = index_of(evs, is_status(t1, "TASK_KILLING"), mark)
        killed = index_of(evs, is_status(t1, "TASK_KILLED"), mark)
        assert mark <= killing < killed
        assert evs[killed + 1][1]["condition"] == "Killed"
        evs = s.wait_for(
            lambda e: any(t == "status_update_event" and d["taskStatus"] == "TASK_RUNNING"
                          and d["taskId"] not in (t1, t2) for t, d in e[mark:]),
            "a replacement running")

        # Delete the app: the deployment stops it, every task ends, the app ends.
        mark = len(evs)
        st, res = api(agent, "DELETE", "/v2/apps/evt")
        assert st == 200, res
        dep3 = res["deploymentId"]
        evs = s.wait_for(lambda e: index_of(e, is_dep_end(dep3), mark) >= 0 and
                         index_of(e, lambda x: x[0] == "app_terminated_event", mark) >= 0,
                         "the app's end")
        start = index_of(evs, lambda e: e[0] == "deployment_info" and e[1]["plan"]["id"] == dep3,
                         mark)
        assert evs[start][1]["currentStep"]["actions"] == [{"action": "StopApplication",
                                                            "app": "/evt"}]
        term = index_of(evs, lambda e: e[0] == "app_terminated_event", mark)
        assert evs[term][1]["appId"] == "/evt"
        assert start < term
        live = {d["taskId"] for t, d in evs[:mark] if t == "status_update_event"}
        ended = {d["taskId"] for t, d in evs if t == "status_update_event"
                 and d["taskStatus"] in ("TASK_KILLED", "TASK_KILLING")}
        assert live - {t1} <= ended
        check_shapes(evs)
    finally:
        s.close()
    deadline = time.monotonic() + 30
    while metric(agent, "clusterctl_events_subscribers") != 0:
        assert time.monotonic() < deadline, "the subscriber was not freed"
        time.sleep(0.1)
    assert metric(agent, "clusterctl_events_slow_dropped_total") == 0


def test_events_filter_by_type(agent):
    only = Stream(agent, "?event_type=status_update_event&event_type=app_terminated_event"
                         "&plan-format=light")
    everything = Stream(agent)
    try:
        assert only.status == 200 and everything.status == 200
        everything.wait_for(lambda e: e, "attach")
        st, res = api(agent, "POST", "/v2/apps",
                      {"id": "/filtered", "cmd": "sleep 1000", "cpus": 0.05, "mem": 32})
        assert st == 201, res
        only.wait_for(lambda e: index_of(e, is_status(status="TASK_RUNNING")) >= 0, "running")
        st, res = api(agent, "DELETE", "/v2/apps/filtered")
        assert st == 200, res
        evs = only.wait_for(lambda e: index_of(e, lambda x: x[0] == "app_terminated_event") >= 0,
                            "app_terminated_event")
        assert {t for t, _ in evs} == {"status_update_event", "app_terminated_event"}
        assert [d["taskStatus"] for t, d in evs if t == "status_update_event"][:2] == [
            "TASK_STAGING", "TASK_RUNNING"]
        all_types = {t for t, _ in everything.wait_for(
            lambda e: index_of(e, lambda x: x[0] == "app_terminated_event") >= 0, "end")}
        assert {"event_stream_attached", "api_post_event", "deployment_info",
                "instance_changed_event"} <= all_types
    finally:
        only.close()
        everything.close()


def test_events_refused_without_event_stream_accept(agent):
    req = urllib.request.Request("http://%s/v2/events" % agent,
                                 headers={"Accept": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 406
    assert "text/event-stream" in json.loads(e.value.read())["message"]


def test_cli_events_prints_the_stream(agent, clusterctl_bin):
    env = dict(os.environ, CLUSTERCTL_ADDR=agent)
    raw = subprocess.Popen([clusterctl_bin, "events", "--type",
                            "app_terminated_event,deployment_success", "--count", "3",
                            "--raw"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env)
    human = subprocess.Popen([clusterctl_bin, "events", "--count", "4"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    try:
        deadline = time.monotonic() + 30
        while metric(agent, "clusterctl_events_subscribers") < 2:
            assert time.monotonic() < deadline, "the CLI did not subscribe"
            time.sleep(0.05)
        st, res = api(agent, "POST", "/v2/apps",
                      {"id": "/cli-evt", "cmd": "sleep 1000", "cpus": 0.05, "mem": 32})
        assert st == 201, res
        # Its deployment ends before the delete (which would replace it).
        wait_until(lambda: api(agent, "GET", "/v2/deployments")[1] == [], 60,
                   "the deployment's end")
        st, res = api(agent, "DELETE", "/v2/apps/cli-evt")
        assert st == 200, res
        out, err = raw.communicate(timeout=60)
        assert raw.returncode == 0, err
        lines = [json.loads(l) for l in out.splitlines()]
        assert [l["eventType"] for l in lines] == [
            "deployment_success", "app_terminated_event", "deployment_success"]
        assert lines[1]["appId"] == "/cli-evt"
        out, err = human.communicate(timeout=60)
        assert human.returncode == 0, err
        lines = out.splitlines()
        assert len(lines) == 4
        # Its own attach and the other CLI's (in either order), then the post.
        assert all(" event_stream_attached 127.0.0.1" in l for l in lines[:1])
        assert " api_post_event /cli-evt from 127.0.0.1 (/v2/apps)" in out
        assert re.search(r" deployment_info \S+ StartApplication /cli-evt", out)
    finally:
        for p in (raw, human):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_follower_stream_shows_the_whole_deployment(procs, tmp_path, clusterctl_bin):
    """Two nodes: the follower's stream shows the whole deployment, and the same
    events in the same order as the leader's (both come from the log)."""
    nodes = []
    for i in (1, 2):
        n = {"name": "events-n%d" % i, "http": free_port(), "rpc": free_port(),
             "dns": free_port(), "data": str(tmp_path / ("data-%d" % i))}
        n["addr"] = "127.0.0.1:%d" % n["http"]
        lo = 34000 + 200 * i
        n["argv"] = [clusterctl_bin, "agent", "--name", n["name"], "--data-dir", n["data"],
                     "--bind", "127.0.0.1", "--advertise", "127.0.0.1",
                     "--http-port", str(n["http"]), "--rpc-port", str(n["rpc"]),
                     "--dns-addr", "127.0.0.1:%d" % n["dns"],
                     "--resources", "ports=[%d-%d]" % (lo, lo + 99)]
        nodes.append(n)
    n1, n2 = nodes
    streams = []
    try:
        n1["proc"] = procs.start(n1["argv"], name="n1")
        token_file = os.path.join(n1["data"], "tls", "join-token")
        wait_until(lambda: os.path.exists(token_file), 20, "the join token")
        token = open(token_file).read().strip()
        wait_for_port("127.0.0.1", n1["http"], timeout=20, proc=n1["proc"].p)
        n2["proc"] = procs.start(n2["argv"] + ["--join", "127.0.0.1:%d" % n1["rpc"],
                                              "--token", token], name="n2")
        wait_for_port("127.0.0.1", n2["http"], timeout=30, proc=n2["proc"].p)

        def leader():
            for n in nodes:
                try:
                    st, j = api(n["addr"], "GET", "/v2/leader")
                except (urllib.error.URLError, OSError):
                    continue
                if st == 200:
                    return next((m for m in nodes if m["addr"] == j["leader"]), None)
            return None

        lead = wait_until(leader, 60, "a leader")
        follower = n2 if lead is n1 else n1
        # The follower has the replica of both nodes' registration.
        wait_until(lambda: len((api(follower["addr"], "GET", "/v1/nodes")[1] or
                                {"nodes": []})["nodes"]) == 2, 60, "both nodes registered")

        on_follower = Stream(follower["addr"])
        on_leader = Stream(lead["addr"])
        streams += [on_follower, on_leader]
        for s in streams:
            assert s.status == 200
            s.wait_for(lambda e: e, "attach")

        # The write goes through the follower (forwarded to the leader).
        st, res, dep = api_dep(follower["addr"], "POST", "/v2/apps",
                               {"id": "/everywhere", "cmd": "sleep 1000", "instances": 2,
                                "cpus": 0.05, "mem": 32})
        assert st == 201 and dep, res
        evs = on_follower.wait_for(lambda e: index_of(e, is_dep_end(dep)) >= 0,
                                   "the deployment's end on the follower", timeout=120)
        assert evs[index_of(evs, is_dep_end(dep))][0] == "deployment_success"
        post = index_of(evs, lambda e: e[0] == "api_post_event")
        info = index_of(evs, lambda e: e[0] == "deployment_info" and e[1]["plan"]["id"] == dep)
        assert 0 < post < info
        running = {d["taskId"] for t, d in evs if t == "status_update_event"
                   and d["taskStatus"] == "TASK_RUNNING"}
        assert len(running) == 2
        staged = [d for t, d in evs if t == "status_update_event"
                  and d["taskStatus"] == "TASK_STAGING"]
        assert {d["taskId"] for d in staged} == running
        check_shapes(evs)

        # Stop it, then compare what both nodes streamed.
        st, res = api(follower["addr"], "DELETE", "/v2/apps/everywhere")
        assert st == 200, res
        dep2 = res["deploymentId"]
        for s in streams:
            s.wait_for(lambda e: index_of(e, is_dep_end(dep2)) >= 0 and
                       index_of(e, lambda x: x[0] == "app_terminated_event") >= 0,
                       "the app's end", timeout=120)

        def from_log(s):
            return [(t, d) for t, d in s.snapshot() if not t.startswith("event_stream_")]
        a, b = from_log(on_follower), from_log(on_leader)
        assert a == b  # the same events, byte for byte, in the same order
        assert len(a) > len(evs)
    finally:
        for s in streams:
            s.close()
        for n in nodes:
            if n.get("proc") is not None and n["proc"].alive():
                try:
                    api(n["addr"], "DELETE", "/v2/apps/everywhere?force=true")
                except (urllib.error.URLError, OSError):
                    pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                _, t = api(n1["addr"], "GET", "/v2/tasks")
            except (urllib.error.URLError, OSError):
                break
            if not (t or {}).get("tasks"):
                break
            time.sleep(0.2)
