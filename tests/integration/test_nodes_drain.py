"""`clusterctl nodes`, `drain` and `undrain` against one real `clusterctl agent
--dev` with node attributes (issue 8 item 7). Multi-node drain and failover
scenarios live with the network-namespace harness; here: the table and its JSON,
attributes feeding constraints, a drained node taking nothing new while its
tasks stay (there is nowhere else to go), undrain placing again, and the CLI's
errors."""
import glob
import json
import os
import subprocess
import time

import pytest

import conftest
from conftest import free_port, wait_for_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for cgroups")

NODE = "failover-n1"
CGROUP_PARENT = "failover-%d" % os.getpid()  # our tasks' cgroups, nobody else's


def cgroup_dirs(pattern):
    return glob.glob("/sys/fs/cgroup/" + pattern) + glob.glob("/sys/fs/cgroup/*/" + pattern)


def busy_cgroups():
    busy = []
    for d in cgroup_dirs(CGROUP_PARENT + "/task-*"):
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                if f.read().split():
                    busy.append(d)
        except OSError:
            pass
    return busy


@pytest.fixture
def agent(procs, tmp_path, clusterctl_bin):
    http, rpc, dns = free_port(), free_port(), free_port()
    p = procs.start([clusterctl_bin, "agent", "--dev", "--data-dir", str(tmp_path / "data"),
                     "--http-port", str(http), "--rpc-port", str(rpc),
                     "--dns-addr", "127.0.0.1:%d" % dns, "--name", NODE,
                     "--attr", "rack=r1", "--attr", "disk=ssd",
                     "--resources", "cpus=2,mem=1024", "--cgroup-parent", CGROUP_PARENT],
                    name="agent")
    wait_for_port("127.0.0.1", http, timeout=15, proc=p.p)
    addr = "127.0.0.1:%d" % http
    wait(lambda: api(addr, "GET", "/v2/leader")[0] == 200 and node(addr) is not None,
         "a leader and the node registered")
    yield addr
    # The agent leaves tasks running when it stops: delete the apps first.
    st, j = api(addr, "GET", "/v2/apps")
    for a in (j or {}).get("apps", []) if st == 200 else []:
        api(addr, "DELETE", "/v2/apps%s?force=true" % a["id"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and busy_cgroups():
        time.sleep(0.2)
    left = busy_cgroups()
    p.stop()
    for d in cgroup_dirs(CGROUP_PARENT + "/task-*") + cgroup_dirs(CGROUP_PARENT):
        try:
            os.rmdir(d)
        except OSError:
            pass
    assert not left, "tasks still running after their apps were deleted: %s" % left


def cli(bin_, addr, *args):
    env = dict(os.environ, CLUSTERCTL_ADDR=addr)
    return subprocess.run([bin_, *args], capture_output=True, text=True, timeout=60, env=env)


def api(addr, method, path, body=None):
    return conftest.api(addr, method, path, body, unreachable=(0, None))


def node(addr):
    st, j = api(addr, "GET", "/v1/nodes")
    if st != 200:
        return None
    return next((n for n in j["nodes"] if n["id"] == NODE), None)


def wait(pred, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def tasks(addr, app):
    st, j = api(addr, "GET", "/v2/apps%s/tasks" % app)
    return j["tasks"] if st == 200 else []


def app(id_, constraints=None, instances=1):
    a = {"id": id_, "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "disk": 0,
         "instances": instances}
    if constraints is not None:
        a["constraints"] = constraints
    return a


def running(addr, id_, n):
    return sum(t["state"] == "TASK_RUNNING" for t in tasks(addr, id_)) == n


def test_nodes_table_and_json(agent, clusterctl_bin):
    st, _ = api(agent, "POST", "/v2/apps", app("/web", instances=2))
    assert st == 201
    wait(lambda: running(agent, "/web", 2), "2 running tasks of /web")

    r = cli(clusterctl_bin, agent, "nodes")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NODE", "ADDRESS", "STATE", "CPUS", "MEM", "TASKS",
                                "ATTRIBUTES", "HEARTBEAT"]
    row = [l.split() for l in lines[1:] if l.split()[0] == NODE][0]
    assert row[2] == "up"
    assert row[3] == "0.2/2"
    assert row[4] == "32/1024"
    assert row[5] == "2"
    assert sorted(row[6].split(",")) == ["disk=ssd", "rack=r1"]
    assert row[7] == "0.0s" and row[8] == "ago"  # the leader hears itself

    r = cli(clusterctl_bin, agent, "nodes", "--json")
    assert r.returncode == 0, r.stderr
    n = [n for n in json.loads(r.stdout)["nodes"] if n["id"] == NODE][0]
    assert n["attributes"] == {"rack": "r1", "disk": "ssd"}
    assert n["used"]["mem"] == 32 and n["tasks"] == 2
    assert n["resources"]["cpus"] == 2
    assert n["lastHeartbeatAgeMs"] >= 0


def test_attributes_feed_constraints(agent):
    st, _ = api(agent, "POST", "/v2/apps", app("/onr1", [["rack", "IS", "r1"]]))
    assert st == 201
    st, _ = api(agent, "POST", "/v2/apps", app("/onhost", [["hostname", "LIKE", NODE]]))
    assert st == 201
    st, _ = api(agent, "POST", "/v2/apps", app("/onr2", [["rack", "IS", "r2"]]))
    assert st == 201
    wait(lambda: running(agent, "/onr1", 1) and running(agent, "/onhost", 1),
         "the tasks whose constraints the node meets")

    def r2_waits():
        st, j = api(agent, "GET", "/v2/queue")
        q = [e for e in j["queue"] if e["app"]["id"] == "/onr2"]
        return q and "rack" in json.dumps(q[0])
    wait(r2_waits, "/onr2 queued, its reason naming the rack constraint")
    assert tasks(agent, "/onr2") == []


def test_drain_places_nothing_new_and_undrain_does(agent, clusterctl_bin):
    st, _ = api(agent, "POST", "/v2/apps", app("/old"))
    assert st == 201
    wait(lambda: running(agent, "/old", 1), "/old running")
    old_id = tasks(agent, "/old")[0]["id"]

    r = cli(clusterctl_bin, agent, "drain", NODE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "node %s: draining" % NODE
    assert node(agent)["state"] == "draining"
    r = cli(clusterctl_bin, agent, "nodes")
    assert " draining " in r.stdout

    # Nothing new lands on a draining node.
    st, _ = api(agent, "POST", "/v2/apps", app("/new"))
    assert st == 201
    time.sleep(2)
    assert tasks(agent, "/new") == []
    # Its own task has nowhere to go: it keeps running, not killed first.
    t = tasks(agent, "/old")
    assert [x["id"] for x in t] == [old_id] and t[0]["state"] == "TASK_RUNNING"

    r = cli(clusterctl_bin, agent, "undrain", NODE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "node %s: up" % NODE
    wait(lambda: running(agent, "/new", 1), "/new placed after undrain")
    assert [x["id"] for x in tasks(agent, "/old")] == [old_id]


def test_drain_errors(agent, clusterctl_bin):
    r = cli(clusterctl_bin, agent, "drain", "nope")
    assert r.returncode == 1
    assert "node 'nope' does not exist" in r.stderr
    r = cli(clusterctl_bin, agent, "drain")
    assert r.returncode == 2
    r = cli(clusterctl_bin, agent, "undrain", NODE)  # already up: nothing to do
    assert r.returncode == 0, r.stderr
    assert node(agent)["state"] == "up"
