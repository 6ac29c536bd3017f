"""Chaos on 3 real agents in network namespaces (netns_cluster.py): random app
creates, updates (scale, new cmd) and deletes, sent through random nodes, mixed
with kill -9, restarts and partitions of one node at a time. Every acknowledged
write is recorded. Afterwards everything is healed and restarted, and:

- every app is in a state some acknowledged write (or an unacknowledged one sent
  after the last acknowledged one: its outcome is unknown) left it in, and the last
  acknowledged version of each remaining app is in its version history;
- every node's replica shows the same apps, and each app runs its instance count;
- no task of a deleted app runs anywhere: checked in /proc (every process that
  carries this run's mark in its environment) and in every node's cgroups, not
  only through the API; and every task process belongs to a task the API lists.

CHAOS_SECONDS (default 150) bounds the chaos; CHAOS_SEED replays a run (the seed is
printed); CHAOS_NODES (default 3) sets the cluster's size. Needs root; skipped otherwise."""
import os
import random
import time

from netns_cluster import netns_cluster  # noqa: F401 (the fixture)

SECONDS = float(os.environ.get("CHAOS_SECONDS", "150"))
NODES = int(os.environ.get("CHAOS_NODES", "3"))
MAX_APPS = 8


class Recorder:
    """What the client sent and what came back, per app, in order."""

    def __init__(self):
        self.ops = {}  # app -> [(op, state, acked, version)]; state None = absent
        self.n_acked = 0
        self.n_unacked = 0

    def add(self, app, op, state, acked, version=None):
        self.ops.setdefault(app, []).append((op, state, acked, version))
        if acked:
            self.n_acked += 1
        else:
            self.n_unacked += 1

    def certain(self, app):
        """The app's state when every write on it was acknowledged, else None
        (its outcome is unknown: the chaos leaves it alone from then on)."""
        ops = self.ops.get(app, [])
        if not ops or not all(o[2] for o in ops):
            return None
        return ops[-1][1]

    def allowed(self, app):
        """The states the app may be in now: the last acknowledged write's, or
        that of any unacknowledged write sent after it."""
        ops = self.ops[app]
        last = max((k for k, o in enumerate(ops) if o[2]), default=-1)
        states = [ops[last][1]] if last >= 0 else [None]
        states += [o[1] for o in ops[last + 1:]]
        return states

    def last_acked_version(self, app):
        for op, state, acked, version in reversed(self.ops[app]):
            if acked:
                return state, version
        return None, None


def spec(c, app, state):
    instances, cmd = state
    return c.app(app, cmd=cmd, instances=instances)


def test_chaos(netns_cluster):
    seed = int(os.environ.get("CHAOS_SEED", str(random.randrange(1 << 30))))
    print("chaos: seed %d (CHAOS_SEED=%d replays the choices), %.0fs, %d nodes" %
          (seed, seed, SECONDS, NODES))
    rnd = random.Random(seed)
    c = netns_cluster(NODES)
    c.leader(timeout=30)
    nodes = sorted(c.nodes)
    rec = Recorder()
    fault = None  # (kind, node, until)
    n_apps = 0
    counts = {}
    t_end = time.monotonic() + SECONDS

    def send(app, op, state):
        i = rnd.choice(nodes)
        if op == "create":
            r = c.api(i, "POST", "/v2/apps", spec(c, app, state), timeout=5)
        elif op == "update":
            r = c.api(i, "PUT", "/v2/apps" + app, spec(c, app, state), timeout=5)
        else:
            r = c.api(i, "DELETE", "/v2/apps" + app, timeout=5)
        code, body = r
        acked = code is not None and 200 <= code < 300
        version = body.get("version") if acked and isinstance(body, dict) else None
        rec.add(app, op, state, acked, version)
        counts[(op, acked)] = counts.get((op, acked), 0) + 1

    while time.monotonic() < t_end:
        now = time.monotonic()
        if fault is not None and now >= fault[2]:
            kind, node, _ = fault
            if kind == "partition":
                c.heal()
            else:
                c.start(node, wait=False)
            fault = None
        live = [a for a in rec.ops if rec.certain(a) is not None]
        r = rnd.random()
        if fault is None and r < 0.15:
            kind = rnd.choice(["kill", "kill", "restart", "partition"])
            lead = None
            try:
                lead = c.leader(timeout=2)
            except AssertionError:
                pass
            node = lead if lead is not None and rnd.random() < 0.5 else rnd.choice(nodes)
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "kill":
                c.kill9(node)
                fault = ("kill", node, now + rnd.uniform(1, 15))
            elif kind == "restart":
                c.restart(node, wait=False)
            else:
                c.isolate(node)
                fault = ("partition", node, now + rnd.uniform(2, 10))
        elif r < 0.45 and len(live) < MAX_APPS:
            n_apps += 1
            send("/chaos%d" % n_apps, "create",
                 (rnd.randint(0, 3), "sleep %d" % rnd.randint(100000, 999999)))
        elif r < 0.85 and live:
            app = rnd.choice(live)
            instances, cmd = rec.certain(app)
            if rnd.random() < 0.6:
                instances = rnd.choice([x for x in range(0, 4) if x != instances])
            else:
                cmd = "sleep %d" % rnd.randint(100000, 999999)
            send(app, "update", (instances, cmd))
        elif live:
            send(rnd.choice(live), "delete", None)
        time.sleep(rnd.uniform(0.1, 0.5))

    print("chaos: ops %s; %d acknowledged, %d not" %
          (sorted(counts.items(), key=str), rec.n_acked, rec.n_unacked))
    assert rec.n_acked > 0

    # ---------------------------------------------------------------- settle
    c.heal()
    for i in nodes:
        if not c.nodes[i].alive():
            c.start(i)
    for i in nodes:
        c.wait_until(lambda: c.info(i) is not None, 30, "node %d's API" % i)
    lid = c.leader(timeout=60)

    def view(i):
        code, body = c.api(i, "GET", "/v2/apps", timeout=5)
        if code != 200:
            return None
        return {a["id"]: (a["instances"], a["cmd"]) for a in body["apps"]}

    def same_everywhere():
        vs = [view(i) for i in nodes]
        return vs[0] if vs[0] is not None and all(v == vs[0] for v in vs) else None

    final = c.wait_until(same_everywhere, 60, "every replica to show the same apps")

    # No acknowledged write lost.
    for app in rec.ops:
        got = final.get(app)
        assert got in rec.allowed(app), \
            "%s is %r; allowed %r; history %r" % (app, got, rec.allowed(app), rec.ops[app])
        state, version = rec.last_acked_version(app)
        if got is not None and got == state and version:
            code, body = c.api(lid, "GET", "/v2/apps%s/versions" % app)
            assert code == 200 and version in body.get("versions", []), (app, version, body)
    unknown = set(final) - set(rec.ops)
    assert not unknown, unknown

    # Every app converges to its instance count; every task process is a task the
    # API lists, and no task of a deleted app is left in /proc or in a cgroup.
    def converged():
        live_ips = {c.nodes[i].ip for i in nodes}
        api_tasks = {}
        for app, (instances, _cmd) in final.items():
            ts = c.running(lid, app)
            if len(ts) != instances or not {t["host"] for t in ts} <= live_ips:
                return False
            api_tasks.update({t["id"]: app for t in ts})
        procs = c.task_processes()
        if any(task not in api_tasks for _app, task in procs.values()):
            return False
        for i in nodes:
            for cg in c.task_cgroups(i):
                app = "/" + cg[len("task-"):].split(".", 1)[0]
                if app not in final:
                    return False
        return True

    try:
        c.wait_until(converged, 120, "every app to run its instances and nothing else",
                     interval=0.5)
    finally:
        procs = c.task_processes()
        for app, (instances, _cmd) in sorted(final.items()):
            print("chaos: %s wants %d, API runs %d, processes %d" %
                  (app, instances, len(c.running(lid, app)),
                   len({t for a, t in procs.values() if a == app})))
        gone = [app for app in rec.ops if app not in final]
        print("chaos: absent at the end %s; their processes: %s; their cgroups: %s" %
              (gone, [p for p, (a, _t) in procs.items() if a in gone],
               [cg for i in nodes for cg in c.task_cgroups(i)
                if "/" + cg[5:].split(".", 1)[0] in gone]))
    c.wait_until(lambda: c.leaderships(), 1, "leaderships in the logs")
    split = {t: n for t, n in c.leaderships().items() if len(n) > 1}
    assert not split, "two leaders in one term: %s" % split
