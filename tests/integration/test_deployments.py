"""Deployments against a real `clusterctl agent --dev` (docs/deployments.md): a
rolling upgrade that never goes below minimumHealthCapacity, 409 and ?force=true,
canaries and promote, rollbacks (by hand and automatic), and groups that start in
dependency order or are refused for a cycle."""
import json
import os
import random
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import api, free_port, wait_for_port, wait_until


def start_agent(procs, data_dir, clusterctl_bin, argv=None):
    """Start an agent (again, with @argv); returns (proc, addr, argv)."""
    if argv is None:
        http, rpc, dns = free_port(), free_port(), free_port()
        # Task ports of our own, below the ephemeral range: other agents on this
        # machine hand out the default 31000-32000, and a task that cannot bind
        # would be replaced under the test's eyes.
        base = random.randrange(20000, 29000, 200)
        # A cgroup parent of our own: an agent removes the task cgroups under its
        # parent that its replica does not know, so a shared one would let other
        # agents on this machine kill our tasks (and ours theirs).
        argv = [clusterctl_bin, "agent", "--dev", "--data-dir", data_dir,
                "--http-port", str(http), "--rpc-port", str(rpc),
                "--dns-addr", "127.0.0.1:%d" % dns,
                "--resources", "ports=[%d-%d]" % (base, base + 199),
                "--cgroup-parent", "deploy-test-%d-%d" % (os.getpid(), http)]
    http = int(argv[argv.index("--http-port") + 1])
    p = procs.start(argv, name="agent")
    wait_for_port("127.0.0.1", http, timeout=15, proc=p.p)
    addr = "127.0.0.1:%d" % http
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the API answers once raft elected itself
        try:
            with urllib.request.urlopen("http://%s/v2/leader" % addr, timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return p, addr, argv


def cleanup_agent(addr, argv, stop_apps=True):
    """Tasks outlive their agent (by design): stop every app while the agent runs,
    then kill what is left in our cgroups (processes our agent started) and
    remove them."""
    try:
        if stop_apps:
            api(addr, "DELETE", "/v2/groups?force=true")
            wait_for("the tasks to stop",
                     lambda: api(addr, "GET", "/v2/tasks")[1]["tasks"] == [], timeout=20)
    except (AssertionError, OSError, urllib.error.URLError):
        pass
    parent = argv[argv.index("--cgroup-parent") + 1]
    for root in ("/sys/fs/cgroup",) + tuple("/sys/fs/cgroup/" + d for d in
                                             os.listdir("/sys/fs/cgroup")):
        top = os.path.join(root, parent)
        if not os.path.isdir(top):
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        os.kill(int(pid), 9)
            except OSError:
                pass
            for _ in range(50):
                try:
                    os.rmdir(dirpath)
                    break
                except OSError:
                    time.sleep(0.02)


@pytest.fixture
def agent(procs, tmp_path, clusterctl_bin):
    p, addr, argv = start_agent(procs, str(tmp_path / "data"), clusterctl_bin)
    yield addr
    cleanup_agent(addr, argv)


def cli(bin_, addr, *args, timeout=120):
    env = dict(os.environ, CLUSTERCTL_ADDR=addr)
    return subprocess.run([bin_, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def web_app(app_id="/web", instances=3, **strategy):
    up = {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0}
    up.update(strategy)
    return {"id": app_id, "cmd": "exec python3 -m http.server $PORT0 --bind 127.0.0.1",
            "cpus": 0.1, "mem": 128, "instances": instances,
            "portDefinitions": [{"port": 0}], "upgradeStrategy": up}


def tasks(addr, app):
    st, j = api(addr, "GET", "/v2/apps%s/tasks" % app)
    assert st == 200
    return j["tasks"]


def wait_for(what, fn, timeout=60):
    return wait_until(fn, timeout, what)


def deployment(addr, dep_id):
    st, j = api(addr, "GET", "/v1/deployments/%s" % dep_id)
    assert st == 200, j
    return j


def settled(addr, app, version, n):
    ts = [t for t in tasks(addr, app) if t["state"] != "TASK_KILLING"]
    return len(ts) == n and all(t["version"] == version and t["state"] == "TASK_RUNNING"
                                for t in ts)


def write(tmp_path, name, obj):
    f = tmp_path / name
    f.write_text(json.dumps(obj))
    return str(f)


def test_rolling_upgrade_keeps_the_floor(agent, clusterctl_bin, tmp_path):
    f = write(tmp_path, "web.json", web_app())
    r = cli(clusterctl_bin, agent, "run", f)
    assert r.returncode == 0, r.stderr
    assert "step 1/1" in r.stdout or "3/3 running" in r.stdout
    _, app = api(agent, "GET", "/v2/apps/web")
    v1 = app["app"]["version"]

    # The upgrade runs in the background while we sample the tasks: at least
    # ceil(0.5 * 3) = 2 running at every look, never more than 3 not being killed.
    spec = web_app()
    spec["env"] = {"V": "2"}
    f2 = write(tmp_path, "web2.json", spec)
    env = dict(os.environ, CLUSTERCTL_ADDR=agent)
    run = subprocess.Popen([clusterctl_bin, "run", f2], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env)
    samples = 0
    while run.poll() is None:
        ts = tasks(agent, "/web")
        running = [t for t in ts if t["state"] == "TASK_RUNNING"]
        live = [t for t in ts if t["state"] != "TASK_KILLING"]
        assert len(running) >= 2, ts
        assert len(live) <= 3, ts
        samples += 1
        time.sleep(0.05)
    out, err = run.communicate()
    assert run.returncode == 0, err
    assert samples > 0
    # Not a terminal: plain progress lines, the step and the counts.
    assert "step 1/1: /web" in out and "new healthy" in out and "old left" in out, out
    assert "\r" not in out
    _, app = api(agent, "GET", "/v2/apps/web")
    v2 = app["app"]["version"]
    assert v2 != v1
    assert settled(agent, "/web", v2, 3)
    st, deps = api(agent, "GET", "/v2/deployments")
    assert st == 200 and deps == []
    # Every version is kept.
    _, vs = api(agent, "GET", "/v2/apps/web/versions")
    assert vs["versions"][:2] == [v2, v1]


def test_canary_409_force_promote(agent, clusterctl_bin, tmp_path):
    r = cli(clusterctl_bin, agent, "run", write(tmp_path, "web.json", web_app(canaries=1)))
    assert r.returncode == 0, r.stderr
    _, app = api(agent, "GET", "/v2/apps/web")
    v1 = app["app"]["version"]
    st, res = api(agent, "PUT", "/v2/apps/web", {"env": {"V": "2"}})
    assert st == 200
    dep = res["deploymentId"]
    v2 = res["version"]

    # One canary of the new version next to the three old tasks; then it waits.
    def canary_up():
        ts = [t for t in tasks(agent, "/web") if t["state"] == "TASK_RUNNING"]
        new = [t for t in ts if t["version"] == v2]
        old = [t for t in ts if t["version"] == v1]
        return len(new) == 1 and len(old) == 3
    wait_for("the canary", canary_up)
    time.sleep(1)
    assert canary_up(), tasks(agent, "/web")
    assert deployment(agent, dep)["status"] == "running"
    r = cli(clusterctl_bin, agent, "deployments")
    assert r.returncode == 0 and dep in r.stdout and "/web" in r.stdout

    # A change while it runs is refused with Marathon's 409 naming it.
    st, j = api(agent, "PUT", "/v2/apps/web", {"env": {"V": "3"}})
    assert st == 409
    assert j["deployments"] == [{"id": dep}]
    assert "force=true" in j["message"]

    # force=true replaces the deployment (same canary rule for the new one).
    st, j = api(agent, "PUT", "/v2/apps/web?force=true", {"env": {"V": "3"}})
    assert st == 200
    dep3, v3 = j["deploymentId"], j["version"]
    assert deployment(agent, dep)["status"] == "cancelled"

    def canary3_up():
        ts = [t for t in tasks(agent, "/web") if t["state"] == "TASK_RUNNING"]
        return len([t for t in ts if t["version"] == v3]) == 1
    wait_for("the new canary", canary3_up)

    r = cli(clusterctl_bin, agent, "promote", "web")
    assert r.returncode == 0, r.stderr
    assert "promoted" in r.stdout
    wait_for("the promoted rollout", lambda: settled(agent, "/web", v3, 3))
    wait_for("success", lambda: deployment(agent, dep3)["status"] == "success")
    r = cli(clusterctl_bin, agent, "promote", "web")
    assert r.returncode == 1  # nothing in progress

    # The CLI's verbs meet the lock too, and --force replaces the deployment.
    st, j = api(agent, "PUT", "/v2/apps/web", {"env": {"V": "4"}})
    assert st == 200
    r = cli(clusterctl_bin, agent, "scale", "web", "4")
    assert r.returncode == 1 and "locked" in r.stderr, r.stderr
    r = cli(clusterctl_bin, agent, "scale", "web", "4", "--force")
    assert r.returncode == 0, r.stderr
    assert deployment(agent, j["deploymentId"])["status"] == "cancelled"


def test_rollback_by_hand_fails_the_run(agent, clusterctl_bin, tmp_path):
    r = cli(clusterctl_bin, agent, "run", write(tmp_path, "web.json", web_app(canaries=1)))
    assert r.returncode == 0, r.stderr
    _, app = api(agent, "GET", "/v2/apps/web")
    v1 = app["app"]["version"]
    old_ids = {t["id"] for t in tasks(agent, "/web")}
    spec = web_app(canaries=1)
    spec["env"] = {"V": "2"}
    env = dict(os.environ, CLUSTERCTL_ADDR=agent)
    run = subprocess.Popen([clusterctl_bin, "run", write(tmp_path, "web2.json", spec)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env)
    wait_for("the deployment", lambda: len(api(agent, "GET", "/v2/deployments")[1]) == 1)
    r = cli(clusterctl_bin, agent, "rollback", "web")
    assert r.returncode == 0, r.stderr
    assert "rolling back" in r.stdout
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1, (out, err)
    assert "failed: rolled back by" in err
    # Back to v1 with the same version string: the old tasks were kept.
    wait_for("v1 again", lambda: settled(agent, "/web", v1, 3))
    assert {t["id"] for t in tasks(agent, "/web")} == old_ids

    # rollback APP VERSION goes to a stored version.
    r = cli(clusterctl_bin, agent, "run", write(tmp_path, "web3.json", web_app()))
    assert r.returncode == 0, r.stderr
    r = cli(clusterctl_bin, agent, "rollback", "web", v1)
    assert r.returncode == 0, r.stderr
    try:
        wait_for("v1 by version", lambda: settled(agent, "/web", v1, 3), timeout=15)
    except AssertionError:
        print(json.dumps(tasks(agent, "/web"), indent=1))
        print(api(agent, "GET", "/v2/deployments"))
        print(api(agent, "GET", "/v2/apps/web")[1]["app"]["version"], v1)
        raise
    r = cli(clusterctl_bin, agent, "rollback", "web", "2000-01-01T00:00:00.000Z")
    assert r.returncode == 1


def test_automatic_rollback_after_the_deadline(agent, clusterctl_bin, tmp_path):
    good = web_app(autoRollback=True, progressDeadlineSeconds=3)
    r = cli(clusterctl_bin, agent, "run", write(tmp_path, "good.json", good))
    assert r.returncode == 0, r.stderr
    _, app = api(agent, "GET", "/v2/apps/web")
    v1 = app["app"]["version"]
    bad = dict(good, cmd="exit 3")
    r = cli(clusterctl_bin, agent, "run", write(tmp_path, "bad.json", bad))
    assert r.returncode == 1
    assert "progressDeadlineSeconds" in r.stderr or "fail" in r.stderr, r.stderr
    wait_for("the rollback", lambda: settled(agent, "/web", v1, 3))
    _, app = api(agent, "GET", "/v2/apps/web")
    assert app["app"]["cmd"] == good["cmd"]


def test_group_starts_in_dependency_order(agent, clusterctl_bin, tmp_path):
    group = {"id": "/shop", "apps": [
        {"id": "web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16,
         "dependencies": ["/shop/api"]},
        {"id": "api", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16,
         "dependencies": ["/shop/db"]},
        {"id": "db", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16}]}
    r = cli(clusterctl_bin, agent, "run", write(tmp_path, "group.json", group))
    assert r.returncode == 0, r.stderr
    assert "step 1/3" in r.stdout or "step 2/3" in r.stdout or "step 3/3" in r.stdout, \
        r.stdout

    def first(app, key):
        return min(t[key] for t in tasks(agent, app))
    # Each app was staged only once the one it depends on was running.
    assert first("/shop/api", "stagedAt") >= first("/shop/db", "startedAt")
    assert first("/shop/web", "stagedAt") >= first("/shop/api", "startedAt")

    cyc = {"id": "/loop", "apps": [
        {"id": "a", "cmd": "sleep 1", "dependencies": ["/loop/b"]},
        {"id": "b", "cmd": "sleep 1", "dependencies": ["/loop/a"]}]}
    r = cli(clusterctl_bin, agent, "run", write(tmp_path, "cycle.json", cyc))
    assert r.returncode == 1
    assert "cycle: /loop/a -> /loop/b -> /loop/a" in r.stderr, r.stderr
    st, _ = api(agent, "GET", "/v2/apps/loop/a")
    assert st == 404


def test_a_restarted_leader_resumes_the_deployment(procs, tmp_path, clusterctl_bin):
    p, addr, argv = start_agent(procs, str(tmp_path / "data"), clusterctl_bin)
    r = cli(clusterctl_bin, addr, "run", write(tmp_path, "web.json", web_app(canaries=1)))
    assert r.returncode == 0, r.stderr
    st, res = api(addr, "PUT", "/v2/apps/web", {"env": {"V": "2"}})
    assert st == 200
    dep, v2 = res["deploymentId"], res["version"]
    wait_for("the canary", lambda: len([t for t in tasks(addr, "/web")
                                        if t["version"] == v2
                                        and t["state"] == "TASK_RUNNING"]) == 1)
    # The agent (the only node: the leader) goes away and comes back: the plan,
    # its step and the canary rule come from the replica.
    p.stop()
    p, addr, _ = start_agent(procs, str(tmp_path / "data"), clusterctl_bin, argv)
    assert deployment(addr, dep)["status"] == "running"
    # The canary rule holds after the restart: never more than one new task.
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        new = [t for t in tasks(addr, "/web")
               if t["version"] == v2 and t["state"] != "TASK_KILLING"]
        assert len(new) <= 1, new
        time.sleep(0.05)
    assert not deployment(addr, dep)["promoted"]
    r = cli(clusterctl_bin, addr, "promote", "web")
    assert r.returncode == 0, r.stderr
    wait_for("the rollout", lambda: settled(addr, "/web", v2, 3))
    wait_for("success", lambda: deployment(addr, dep)["status"] == "success")
    cleanup_agent(addr, argv)


def test_a_new_leader_resumes_the_deployment(procs, tmp_path, clusterctl_bin):
    """Three agents; a deployment waits for its canary to be promoted; the leader
    is killed (-9): the new leader has the deployment, keeps the canary rule, and
    finishes it once promoted through a survivor."""
    from test_cluster_join import Node, leader_of, members, wait_until
    nodes = [Node(i, tmp_path) for i in (1, 2, 3)]
    cg = lambda n: ["--cgroup-parent", "deploy-test-%d-%s" % (os.getpid(), n.name)]
    n1 = nodes[0]
    argvs = {}
    try:
        argvs[n1.name] = n1.argv(clusterctl_bin, cg(n1))
        n1.proc = procs.start(argvs[n1.name], name="n1")
        token_file = os.path.join(n1.data, "tls", "join-token")
        wait_until(lambda: os.path.exists(token_file), 20, "the join token file")
        token = open(token_file).read().strip()
        for n in nodes[1:]:
            argvs[n.name] = n.argv(clusterctl_bin, ["--join", "127.0.0.1:%d" % n1.rpc,
                                                    "--token", token] + cg(n))
            n.proc = procs.start(argvs[n.name], name=n.name)
        wait_until(lambda: (lambda ms: ms and len(ms) == 3 and all(
            m["role"] == "voter" for m in ms))(members(clusterctl_bin, n1.addr)),
            90, "3 voters")
        leader = wait_until(lambda: leader_of(nodes), 30, "a leader")
        app = {"id": "/web", "cmd": "sleep 300", "cpus": 0.01, "mem": 16, "instances": 3,
               "upgradeStrategy": {"minimumHealthCapacity": 0.5,
                                   "maximumOverCapacity": 0, "canaries": 1}}
        r = cli(clusterctl_bin, leader.addr, "run", write(tmp_path, "web.json", app))
        assert r.returncode == 0, r.stdout + r.stderr
        st, res = api(leader.addr, "PUT", "/v2/apps/web", {"env": {"V": "2"}})
        assert st == 200, res
        dep, v2 = res["deploymentId"], res["version"]
        wait_for("the canary", lambda: len([t for t in tasks(leader.addr, "/web")
                                            if t["version"] == v2
                                            and t["state"] == "TASK_RUNNING"]) == 1)

        leader.proc.kill9()
        rest = [n for n in nodes if n is not leader]
        new = wait_until(lambda: (lambda l: l if l is not None and l is not leader
                                  else None)(leader_of(rest)), 30, "a new leader")
        assert deployment(new.addr, dep)["status"] == "running"
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            live = [t for t in tasks(new.addr, "/web") if t["version"] == v2
                    and t["state"] not in ("TASK_KILLING", "TASK_UNREACHABLE")]
            assert len(live) <= 1, live
            time.sleep(0.1)
        other = next(n for n in rest if n is not new)
        r = cli(clusterctl_bin, other.addr, "promote", "web")
        assert r.returncode == 0, r.stderr
        # The dead node's tasks are replaced too (unreachable, then inactive).
        try:
            wait_for("success", lambda: deployment(new.addr, dep)["status"] == "success",
                     timeout=120)
        except AssertionError:
            print(json.dumps(deployment(new.addr, dep), indent=1))
            print(json.dumps([(t["id"][-6:], t["version"], t["state"], t["host"])
                              for t in tasks(new.addr, "/web")], indent=1))
            print(api(new.addr, "GET", "/v1/nodes"))
            raise
        ts = [t for t in tasks(new.addr, "/web") if t["state"] == "TASK_RUNNING"]
        assert len(ts) == 3 and all(t["version"] == v2 for t in ts)
    finally:
        # The dead node's tasks stay listed (being killed) until it returns, so
        # do not wait for an empty list: stop the agents and kill what is left
        # in our cgroups.
        for n in nodes:
            if n.proc is not None:
                n.proc.stop()
        for n in nodes:
            if n.name in argvs:
                cleanup_agent(n.addr, argvs[n.name], stop_apps=False)


def test_a_version_that_fails_its_health_checks_is_rolled_back(agent, clusterctl_bin,
                                                                 tmp_path):
    def spec(check):
        a = web_app(autoRollback=True, progressDeadlineSeconds=6)
        a["healthChecks"] = [dict(check, gracePeriodSeconds=30, intervalSeconds=1,
                                  timeoutSeconds=2, maxConsecutiveFailures=0)]
        return a
    # (A TCP check: python's http.server in a task whose data dir is under /tmp
    # answers 404 to every path, its cwd being a host path its private /tmp hides.)
    good = spec({"protocol": "TCP", "portIndex": 0})
    r = cli(clusterctl_bin, agent, "run", write(tmp_path, "good.json", good))
    assert r.returncode == 0, r.stdout + r.stderr
    _, app = api(agent, "GET", "/v2/apps/web")
    v1 = app["app"]["version"]
    healthy = lambda: [t for t in tasks(agent, "/web") if t["state"] == "TASK_RUNNING"
                       and t.get("healthCheckResults")
                       and all(h["alive"] for h in t["healthCheckResults"])]
    assert len(healthy()) == 3  # run waited for the checks

    # The new version's check never passes: at most one old task goes (the floor
    # is 2 of 3), and after the deadline the deployment is rolled back by itself.
    bad = spec({"protocol": "COMMAND", "command": {"value": "false"}})
    env = dict(os.environ, CLUSTERCTL_ADDR=agent)
    run = subprocess.Popen([clusterctl_bin, "run", write(tmp_path, "bad.json", bad)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env)
    while run.poll() is None:
        old = [t for t in tasks(agent, "/web") if t["version"] == v1
               and t["state"] == "TASK_RUNNING"]
        assert len(old) >= 2, tasks(agent, "/web")
        time.sleep(0.1)
    out, err = run.communicate()
    assert run.returncode == 1, out + err
    assert "progressDeadlineSeconds" in err, err
    wait_for("v1 healthy again", lambda: settled(agent, "/web", v1, 3)
             and len(healthy()) == 3, timeout=60)
