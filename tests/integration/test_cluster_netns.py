"""The cluster issue's scenarios on real agents, each in its own network namespace
(tests/integration/netns_cluster.py): bootstrap and join; kill -9 of the leader;
loss of a worker; a partitioned minority and the heal; a restart of every node;
five voters. Needs root; skipped (with the reason) otherwise. Timings are printed,
never asserted: the machine is shared."""
import json
import time

import pytest

from netns_cluster import DnsProbe, netns_cluster  # noqa: F401 (the fixture)


def voters(c, i):
    return c.voters(i)


def write(c, i, app, timeout=30.0, method="POST"):
    """Create (POST) or update (PUT) @app through node @i, again until it is
    acknowledged (2xx); returns (seconds it took, the id acknowledged). A create
    tried again uses a new id (<id>-r<k>): the unanswered attempt may still be
    applied, and the retry must not turn into a conflict with it."""
    t0 = time.monotonic()
    k = 0
    while True:
        body = dict(app)
        if method == "POST" and k > 0:
            body["id"] = "%s-r%d" % (app["id"], k)
        path = "/v2/apps" if method == "POST" else "/v2/apps" + app["id"]
        code, resp = c.api(i, method, path, body, timeout=5)
        if code is not None and 200 <= code < 300:
            return time.monotonic() - t0, body["id"]
        if time.monotonic() - t0 > timeout:
            raise AssertionError("node %d did not acknowledge %s %s in %.0fs: %s %r" %
                                 (i, method, body["id"], timeout, code, resp))
        k += 1
        time.sleep(0.05)


def update(c, i, app, timeout=30.0):
    return write(c, i, app, timeout, method="PUT")


def apps_view(c, i):
    """{app id: (instances, version, cmd)} as node @i's replica shows it."""
    code, body = c.api(i, "GET", "/v2/apps")
    if code != 200:
        return None
    return {a["id"]: (a["instances"], a["version"], a["cmd"]) for a in body["apps"]}


def placement(c, i, app_id):
    """{task id: host} of the running tasks of @app_id, as node @i sees them."""
    return {t["id"]: t["host"] for t in c.running(i, app_id)}


def pids_by_task(c, app_id=None):
    """{task id: pids} of the processes of this run's tasks (of @app_id only)."""
    out = {}
    for pid, (app, task) in c.task_processes().items():
        if app_id is None or app == app_id:
            out.setdefault(task, set()).add(pid)
    return out


def one_leader_per_term(c):
    terms = c.leaderships()
    split = {t: sorted(n) for t, n in terms.items() if len(n) > 1}
    assert not split, "two leaders in one term: %s" % split
    return terms


def wait_converged(c, nodes, app_id, n, timeout=60.0):
    """Every node of @nodes shows @n running tasks of @app_id, on live nodes."""
    live = {c.nodes[j].ip for j in c.alive()}

    def done():
        for i in nodes:
            p = placement(c, i, app_id)
            if len(p) != n or not set(p.values()) <= live:
                return False
        return True

    c.wait_until(done, timeout, "%d running tasks of %s on %s" % (n, app_id, nodes))


def test_bootstrap_and_join(netns_cluster):
    c = netns_cluster(3)
    for i in (1, 2, 3):
        c.wait_until(lambda: voters(c, i) == 3, 60, "node %d to list 3 voters" % i)
    lid = c.leader()
    for i in (1, 2, 3):
        inf = c.info(i)
        assert inf["leader"] == c.nodes[lid].api_addr, inf
    # A write through a follower reaches every replica.
    follower = next(i for i in (1, 2, 3) if i != lid)
    _, aid = write(c, follower, c.app("/joined", instances=3))
    for i in (1, 2, 3):
        c.wait_until(lambda: aid in (apps_view(c, i) or {}), 20, "%s on node %d" % (aid, i))
    wait_converged(c, [1, 2, 3], aid, 3)
    for i in (1, 2, 3):
        st, ans = c.dig(i, "leader.cluster")
        assert st == "NOERROR" and ans == [c.nodes[lid].ip], (i, st, ans)
    one_leader_per_term(c)


def test_kill_leader_keeps_tasks_and_dns(netns_cluster):
    c = netns_cluster(3)
    c.wait_until(lambda: voters(c, 1) == 3, 60, "3 voters")
    lid = c.leader()
    write(c, lid, c.app("/web", cmd="python3 -m http.server $PORT0", instances=3))
    wait_converged(c, [1, 2, 3], "/web", 3)
    before = placement(c, lid, "/web")
    pids = pids_by_task(c, "/web")
    assert set(pids) == set(before), (pids, before)
    survivors = [i for i in (1, 2, 3) if i != lid]

    probe = DnsProbe(c, survivors, "web.cluster").start()
    time.sleep(0.5)
    c.kill9(lid)
    t0 = time.monotonic()
    new = c.leader(among=survivors, timeout=30)
    print("new leader n%d after %.3fs" % (new, time.monotonic() - t0))
    acked = []
    for k, i in enumerate(survivors):
        took, aid = write(c, i, c.app("/after%d" % k, instances=0))
        acked.append(aid)
        print("write %s through n%d acknowledged %.3fs after the kill (%.3fs of tries)" %
              (aid, i, time.monotonic() - t0, took))
    time.sleep(1.0)
    results = probe.stop()

    # Tasks are untouched: every process is still there, and the survivors' tasks
    # keep their ids (no restart, no replacement) as the new leader sees them.
    assert pids_by_task(c, "/web") == pids
    now = placement(c, new, "/web")
    dead_ip = c.nodes[lid].ip
    for tid, host in before.items():
        if host != dead_ip:
            assert now.get(tid) == host, (tid, host, now)
    # DNS answered from every surviving node throughout, with task addresses only.
    ips = {nd.ip for nd in c.nodes.values()}
    assert len(results) >= 2 * len(survivors)
    bad = [r for r in results if r[2] != "NOERROR" or not set(r[3]) <= ips]
    assert not bad, bad[:10]
    assert {r[1] for r in results} == set(survivors)

    # The old leader comes back as a follower and catches up.
    c.start(lid)
    c.wait_until(lambda: set(acked) <= set(apps_view(c, lid) or {}), 30,
                 "the old leader to catch up")
    one_leader_per_term(c)


def test_kill_worker_tasks_replaced(netns_cluster):
    c = netns_cluster(3)
    c.wait_until(lambda: voters(c, 1) == 3, 60, "3 voters")
    lid = c.leader()
    # One task per node at most, two tasks: one node stays free for the replacement.
    write(c, lid, c.app("/spread", instances=2, constraints=[["hostname", "UNIQUE"]]))
    wait_converged(c, [1, 2, 3], "/spread", 2)
    before = placement(c, lid, "/spread")
    by_ip = {nd.ip: i for i, nd in c.nodes.items()}
    workers = [by_ip[h] for h in before.values() if by_ip[h] != lid]
    assert workers, "both tasks on the leader despite UNIQUE: %s" % before
    w = workers[0]
    lost = {tid for tid, h in before.items() if h == c.nodes[w].ip}
    old_pids = {p for tid, ps in pids_by_task(c).items() if tid in lost for p in ps}
    assert old_pids

    c.kill9(w)
    t0 = time.monotonic()
    others = [i for i in (1, 2, 3) if i != w]
    wait_converged(c, others, "/spread", 2, timeout=60)
    print("tasks of n%d running elsewhere after %.1fs" % (w, time.monotonic() - t0))
    now = placement(c, lid, "/spread")
    assert not lost & set(now), now
    assert c.nodes[w].ip not in now.values()

    # The node comes back: its superseded tasks are killed, the app keeps 2.
    c.start(w)
    c.wait_until(lambda: not old_pids & set(c.task_processes()), 60,
                 "n%d's superseded tasks to be killed" % w)
    wait_converged(c, [1, 2, 3], "/spread", 2)
    assert not lost & set(placement(c, w, "/spread"))
    one_leader_per_term(c)


@pytest.mark.parametrize("who", ["leader", "follower"])
def test_partitioned_minority_takes_no_writes_then_catches_up(netns_cluster, tmp_path, who):
    c = netns_cluster(3)
    c.wait_until(lambda: voters(c, 1) == 3, 60, "3 voters")
    lid = c.leader()
    write(c, lid, c.app("/before", instances=1))
    wait_converged(c, [1, 2, 3], "/before", 1)
    # The minority: the leader itself, or a follower.
    old = lid if who == "leader" else next(i for i in (1, 2, 3) if i != lid)
    majority = [i for i in (1, 2, 3) if i != old]

    c.isolate(old)
    new = c.leader(among=majority, timeout=30)
    assert new != old

    # The minority acknowledges nothing: neither the API ...
    code, body = c.api(old, "POST", "/v2/apps", c.app("/minority"), timeout=15)
    assert code is None or code >= 300, (code, body)
    # ... nor the CLI, which fails clearly or runs into its time limit.
    spec = tmp_path / "minority.json"
    spec.write_text(json.dumps(c.app("/minority2")))
    r = c.cli(old, "run", str(spec), timeout=40)
    print("CLI on the minority: exit %s, stderr %r" % (r.returncode, r.stderr[-300:]))
    assert r.returncode != 0

    # The majority goes on, through the new leader and through its follower.
    acked = [write(c, i, c.app("/majority%d" % k, instances=1))[1]
             for k, i in enumerate(majority)]
    update(c, new, c.app("/before", instances=2))
    wait_converged(c, majority, "/before", 2)

    c.heal()

    def same():
        vs = [apps_view(c, i) for i in (1, 2, 3)]
        return vs[0] if vs[0] is not None and vs.count(vs[0]) == 3 else None

    want = c.wait_until(same, 30, "the healed node to have the majority's apps")
    # The unacknowledged writes may or may not be applied: a request the minority
    # forwarded before the cut can reach the leader after the heal (TCP
    # retransmits it), which linearizability allows (its outcome was unknown).
    print("unacknowledged writes applied after the heal: %s" %
          sorted(a for a in ("/minority", "/minority2") if a in want))
    assert {"/before"} | set(acked) <= set(want)
    for i in (1, 2, 3):
        assert c.info(i)["leader"] == c.info(new)["leader"]
    wait_converged(c, [1, 2, 3], "/before", 2)
    one_leader_per_term(c)


def test_restart_every_node_keeps_state(netns_cluster):
    c = netns_cluster(3)
    c.wait_until(lambda: voters(c, 1) == 3, 60, "3 voters")
    lid = c.leader()
    write(c, lid, c.app("/a", instances=3))
    write(c, lid, c.app("/b", instances=1, cmd="sleep 200000"))
    update(c, lid, c.app("/b", instances=2, cmd="sleep 300000"))
    write(c, lid, c.app("/gone", instances=1))
    assert c.api(lid, "DELETE", "/v2/apps/gone")[0] in (200, 202)
    wait_converged(c, [1, 2, 3], "/a", 3)
    wait_converged(c, [1, 2, 3], "/b", 2)
    want = apps_view(c, lid)
    assert set(want) == {"/a", "/b"}, want
    tasks_before = {a: placement(c, lid, a) for a in ("/a", "/b")}

    for i in (1, 2, 3):
        c.kill9(i)
    for i in (1, 2, 3):
        c.start(i)
    lid = c.leader(timeout=30)
    for i in (1, 2, 3):
        c.wait_until(lambda: apps_view(c, i) == want, 30, "node %d's apps after restart" % i)
    for a in ("/a", "/b"):
        wait_converged(c, [1, 2, 3], a, len(tasks_before[a]))
        # The same tasks, re-adopted where they ran: nothing was restarted.
        assert placement(c, lid, a) == tasks_before[a]
    assert not any(app == "/gone" for app, _t in c.task_processes().values())
    one_leader_per_term(c)


def test_five_nodes_five_voters(netns_cluster):
    c = netns_cluster(5, voters=5)
    for i in (1, 3, 5):
        c.wait_until(lambda: voters(c, i) == 5, 90, "node %d to list 5 voters" % i)
    lid = c.leader()
    write(c, lid, c.app("/five", instances=5))
    wait_converged(c, [1, 2, 3, 4, 5], "/five", 5)
    # Two of five may fail, the leader among them: the other three go on.
    down = [lid, next(i for i in (1, 2, 3, 4, 5) if i != lid)]
    for i in down:
        c.kill9(i)
    rest = [i for i in (1, 2, 3, 4, 5) if i not in down]
    new = c.leader(among=rest, timeout=30)
    acked = {write(c, i, c.app("/five-after-%d" % i))[1] for i in rest}
    for i in down:
        c.start(i)
    c.wait_until(lambda: all(acked <= set(apps_view(c, i) or {}) for i in down), 30,
                 "the restarted nodes to catch up")
    assert new in rest
    one_leader_per_term(c)
