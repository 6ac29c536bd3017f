"""The API verbs of the CLI against a real `clusterctl agent --dev`: run, apps, ps,
status, scale, restart, stop, logs, leader; Marathon's v2 API through curl-like
requests; usage errors and exit codes."""
import json
import os
import select
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import api, free_port, marathon_example, wait_for_port


@pytest.fixture
def agent(procs, tmp_path, clusterctl_bin):
    http, rpc, dns = free_port(), free_port(), free_port()
    p = procs.start([clusterctl_bin, "agent", "--dev", "--data-dir", str(tmp_path / "data"),
                     "--http-port", str(http), "--rpc-port", str(rpc),
                     "--dns-addr", "127.0.0.1:%d" % dns], name="agent")
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
    return addr


def cli(bin_, addr, *args, timeout=90):
    env = dict(os.environ, CLUSTERCTL_ADDR=addr)
    return subprocess.run([bin_, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def running(addr, app):
    st, j = api(addr, "GET", "/v2/apps" + app)
    assert st == 200
    return sum(1 for t in j["app"]["tasks"] if t["state"] == "TASK_RUNNING")


def wait_running(addr, app, n, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st, j = api(addr, "GET", "/v2/apps" + app)
        live = [t for t in j["app"]["tasks"] if t["state"] != "TASK_KILLING"]
        if sum(1 for t in live if t["state"] == "TASK_RUNNING") == n and len(live) == n:
            return
        time.sleep(0.2)
    raise AssertionError("%s: not %d running: %s" % (app, n, j))


def test_run_scale_stop(agent, clusterctl_bin):
    r = cli(clusterctl_bin, agent, "run", marathon_example("app-minimal-sleep.json"), "--timeout", "60")
    assert r.returncode == 0, r.stderr
    assert "/simple: 2/2 running" in r.stdout
    assert running(agent, "/simple") == 2

    r = cli(clusterctl_bin, agent, "apps")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "INSTANCES", "RUNNING", "CPUS", "MEM", "VERSION"]
    assert lines[1].split()[:5] == ["/simple", "2", "2", "0.1", "16"]

    r = cli(clusterctl_bin, agent, "ps", "simple")
    assert r.returncode == 0
    assert len([l for l in r.stdout.splitlines() if " running " in l]) == 2

    r = cli(clusterctl_bin, agent, "scale", "simple", "5")
    assert r.returncode == 0, r.stderr
    wait_running(agent, "/simple", 5)
    r = cli(clusterctl_bin, agent, "scale", "/simple", "0")
    assert r.returncode == 0, r.stderr
    wait_running(agent, "/simple", 0)

    r = cli(clusterctl_bin, agent, "stop", "simple")
    assert r.returncode == 0, r.stderr
    st, _ = api(agent, "GET", "/v2/apps/simple")
    assert st == 404
    r = cli(clusterctl_bin, agent, "stop", "simple")
    assert r.returncode == 1
    assert "does not exist" in r.stderr


def test_restart_replaces_tasks(agent, clusterctl_bin):
    r = cli(clusterctl_bin, agent, "run", marathon_example("app-minimal-sleep.json"))
    assert r.returncode == 0, r.stderr
    _, before = api(agent, "GET", "/v2/apps/simple")
    old = {t["id"] for t in before["app"]["tasks"]}
    r = cli(clusterctl_bin, agent, "restart", "simple", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["version"] > before["app"]["version"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, j = api(agent, "GET", "/v2/apps/simple")
        ids = {t["id"] for t in j["app"]["tasks"] if t["state"] == "TASK_RUNNING"}
        if len(ids) == 2 and not ids & old:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("tasks not replaced: %s" % j)


def test_logs_follow_prints_lines_as_the_task_writes_them(agent, clusterctl_bin, tmp_path):
    """`logs -f` streams: lines written after it started arrive, in order, and a task
    that does not exist is an error answer, not a hang."""
    f = tmp_path / "ticker.json"
    f.write_text(json.dumps({"id": "/ticker", "cpus": 0.1, "mem": 16,
                             "cmd": "i=0; while true; do echo tick $i; i=$((i+1)); "
                                    "sleep 0.2; done"}))
    r = cli(clusterctl_bin, agent, "run", str(f), "--timeout", "60")
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, CLUSTERCTL_ADDR=agent)
    p = subprocess.Popen([clusterctl_bin, "logs", "ticker", "-f"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    try:
        deadline = time.monotonic() + 30
        while len(lines) < 15:  # a follow that buffers fails here instead of hanging
            left = deadline - time.monotonic()
            assert left > 0, "logs -f printed %d of 15 lines in 30 s" % len(lines)
            if select.select([p.stdout], [], [], left)[0]:
                lines.append(p.stdout.readline())
    finally:
        p.kill()
        p.wait()
    nums = [int(x.split()[1]) for x in lines]
    assert nums == list(range(nums[0], nums[0] + 15)), lines
    r = cli(clusterctl_bin, agent, "logs", "ticker.nosuchtask", "-f", timeout=20)
    assert r.returncode == 1
    assert r.stderr != ""


def test_invalid_examples_exit_1_with_field_names(agent, clusterctl_bin):
    r = cli(clusterctl_bin, agent, "run", marathon_example("app-kitchen-sink-rest-api-doc-example.json"))
    assert r.returncode == 1
    assert "Object is not valid" in r.stderr
    assert "/env/PASSWORD" in r.stderr
    assert "/portDefinitions" in r.stderr
    r = cli(clusterctl_bin, agent, "run", marathon_example("app-docker-host-tcp-hc-fixed-port.json"))
    assert r.returncode == 1
    assert "unsupported feature: container.docker.image" in r.stderr
    st, j = api(agent, "GET", "/v2/apps")
    assert j == {"apps": []}


def test_failing_app_fails_run_with_reason_and_logs(agent, clusterctl_bin, tmp_path):
    f = tmp_path / "crash.json"
    f.write_text(json.dumps({"id": "/crash", "cmd": "echo boom; echo oops >&2; exit 3",
                             "cpus": 0.1, "mem": 16, "backoffFactor": 1}))
    r = cli(clusterctl_bin, agent, "run", str(f), "--timeout", "60")
    assert r.returncode == 1
    assert "tasks fail repeatedly" in r.stderr
    assert "status 3" in r.stderr
    r = cli(clusterctl_bin, agent, "logs", "crash")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "boom\n"
    r = cli(clusterctl_bin, agent, "logs", "crash", "--stderr")
    assert r.stdout == "oops\n"
    r = cli(clusterctl_bin, agent, "status", "crash")
    assert r.returncode == 0
    assert "last failure" in r.stdout
    assert "waiting:" in r.stdout


def test_json_output_parses_and_leader(agent, clusterctl_bin):
    r = cli(clusterctl_bin, agent, "run", marathon_example("app-minimal-sleep.json"), "--json")
    assert r.returncode == 0, r.stderr
    assert "deploymentId" in json.loads(r.stdout)
    for verb in (["apps"], ["ps"], ["status", "simple"], ["leader"]):
        r = cli(clusterctl_bin, agent, *verb, "--json")
        assert r.returncode == 0, (verb, r.stderr)
        json.loads(r.stdout)
    r = cli(clusterctl_bin, agent, "leader")
    assert r.stdout.strip() == agent


def test_run_group_and_array(agent, clusterctl_bin, tmp_path):
    g = tmp_path / "group.json"
    g.write_text(json.dumps({"id": "/dept", "apps": [{"id": "web", "cmd": "sleep 100",
                                                      "cpus": 0.1, "mem": 16}],
                             "groups": [{"id": "db", "apps": [{"id": "pg", "cmd": "sleep 100",
                                                               "cpus": 0.1, "mem": 16}]}]}))
    r = cli(clusterctl_bin, agent, "run", str(g))
    assert r.returncode == 0, r.stderr
    assert "/dept/web: 1/1 running" in r.stdout
    assert "/dept/db/pg: 1/1 running" in r.stdout
    st, j = api(agent, "GET", "/v2/groups/dept")
    assert st == 200 and j["groups"][0]["id"] == "/dept/db"
    r = cli(clusterctl_bin, agent, "run", marathon_example("apps-array-put-with-dependencies.json"),
            "--detach")
    assert r.returncode == 0, r.stderr
    st, j = api(agent, "GET", "/v2/apps?id=/test/")
    assert len(j["apps"]) == 2


def test_usage_errors_exit_2(clusterctl_bin):
    for args in (["run"], ["scale", "x"], ["scale", "x", "many"], ["stop"], ["apps", "--bogus"],
                 ["run", "a.json", "--timeout", "soon"], ["logs"], ["ps", "a", "b"]):
        r = subprocess.run([clusterctl_bin, *args], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, (args, r.stderr)
    r = subprocess.run([clusterctl_bin, "run", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: clusterctl run FILE" in r.stdout


def test_unreachable_agent_says_what_to_do(clusterctl_bin):
    port = free_port()
    r = subprocess.run([clusterctl_bin, "apps", "--addr", "127.0.0.1:%d" % port],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "cannot reach the agent at 127.0.0.1:%d" % port in r.stderr
    assert "CLUSTERCTL_ADDR" in r.stderr
