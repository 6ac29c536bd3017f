"""A cluster of real `clusterctl agent` processes, each in its own network namespace,
joined by veth pairs to one bridge that lives in a namespace of its own (the root
namespace gets no address, no route and no rule from us). Every name we create
starts with `harness-` and a random suffix, so parallel runs never collide:

    harness-<sfx>-br   the bridge's namespace (bridge `br0`, veth ends `v<i>`)
    harness-<sfx>-n<i> node i's namespace (`lo` up, `eth0` = 10.77.<x>.<i>/24)
    /sys/fs/cgroup/<controller>/harness-<sfx>/n<i>   node i's task cgroups
    <tmp>/harness-<sfx>-*/n<i>                       node i's data dir and log

Agents are entered into their namespace with `nsenter --net` (not `ip netns exec`,
which remounts /sys and so hides the cgroup hierarchies). Python talks to a node
from inside its namespace: a socket made after setns(2) on this thread keeps
that namespace.

Used by the pytest scenarios (the `netns_cluster` fixture below) and by
tests/bench/cluster. Needs root; `problem()` says why it cannot run."""
import contextlib
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

CLONE_NEWNET = 0x40000000
CGROUP_ROOT = "/sys/fs/cgroup"
HTTP_PORT = 7070
RPC_PORT = 7071
REGISTRY = "/run/harness-netns"  # one file per live run: who owns it

_libc = ctypes.CDLL(None, use_errno=True)


def _run(argv, check=True, timeout=30):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                                r.stderr.strip()))
    return r


def problem():
    """None when this machine can run the harness, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables, cgroups)"
    for tool in ("ip", "nsenter", "iptables", "dig"):
        if shutil.which(tool) is None:
            return "%s is not installed" % tool
    name = "harness-probe-%d-%s" % (os.getpid(), os.urandom(3).hex())
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return "`ip netns add` does not work: " + r.stderr.strip()
    try:
        r = subprocess.run(["nsenter", "--net=/run/netns/" + name, "iptables", "-A",
                            "INPUT", "-s", "10.77.255.1", "-j", "DROP"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return "iptables does not work in a network namespace: " + r.stderr.strip()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    if not os.path.isdir(CGROUP_ROOT):
        return "no cgroup filesystem at " + CGROUP_ROOT
    return None


@contextlib.contextmanager
def in_netns(path):
    """Run the block (this thread only) inside the network namespace at @path."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns %s: %s" % (path, os.strerror(e)))
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, "setns back: %s" % os.strerror(e))
    finally:
        os.close(target)
        os.close(own)


class Node:
    def __init__(self, cluster, i):
        self.c = cluster
        self.i = i
        self.name = "n%d" % i
        self.ns = "%s-n%d" % (cluster.prefix, i)
        self.ns_path = "/run/netns/" + self.ns
        self.ip = "%s.%d" % (cluster.net, i)
        self.dir = os.path.join(cluster.workdir, self.name)
        self.log_path = os.path.join(cluster.workdir, self.name + ".log")
        self.cgroup_parent = "%s/%s" % (cluster.prefix, self.name)
        self.proc = None
        self.started = 0  # how many times

    @property
    def api_addr(self):
        return "%s:%d" % (self.ip, HTTP_PORT)

    @property
    def rpc_addr(self):
        return "%s:%d" % (self.ip, RPC_PORT)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def argv(self, *argv):
        """argv run inside this node's network namespace."""
        return ["nsenter", "--net=" + self.ns_path] + list(argv)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])


class NetnsCluster:
    """N nodes (1-based indices). Call create() then start_all(); teardown() is
    idempotent and always safe, whatever state the cluster is in."""

    def __init__(self, bin_, n=3, voters=None, workdir=None, subnet=None, attrs=None,
                 log=print):
        self.bin = bin_
        self.n = n
        self.want_voters = voters
        self.sfx = os.urandom(3).hex()
        self.prefix = "harness-" + self.sfx
        # A private /24 per run: 10.77.<x>.0/24, x from the suffix (100-227).
        self.net = subnet or "10.77.%d" % (100 + int(self.sfx[:2], 16) % 128)
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix=self.prefix + "-")
        self.attrs = attrs or {}
        self.say = log
        self.br_ns = self.prefix + "-br"
        self.nodes = {i: Node(self, i) for i in range(1, n + 1)}
        self.made_ns = []
        self.token = None
        self.partitioned = False
        self._torn = False

    # ------------------------------------------------------------ network

    def create(self):
        register(self.sfx, self.workdir, self.own_workdir)
        _run(["ip", "netns", "add", self.br_ns])
        self.made_ns.append(self.br_ns)
        _run(["ip", "-n", self.br_ns, "link", "set", "lo", "up"])
        _run(["ip", "-n", self.br_ns, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", self.br_ns, "link", "set", "br0", "up"])
        for nd in self.nodes.values():
            _run(["ip", "netns", "add", nd.ns])
            self.made_ns.append(nd.ns)
            _run(["ip", "-n", nd.ns, "link", "set", "lo", "up"])
            # Both ends are made inside our namespaces: no name in the root one.
            _run(["ip", "-n", self.br_ns, "link", "add", "v%d" % nd.i, "type", "veth",
                  "peer", "name", "eth0", "netns", nd.ns])
            _run(["ip", "-n", self.br_ns, "link", "set", "v%d" % nd.i, "master", "br0"])
            _run(["ip", "-n", self.br_ns, "link", "set", "v%d" % nd.i, "up"])
            _run(["ip", "-n", nd.ns, "addr", "add", nd.ip + "/24", "dev", "eth0"])
            _run(["ip", "-n", nd.ns, "link", "set", "eth0", "up"])
            os.makedirs(nd.dir, exist_ok=True)
        self.say("harness: %d nodes %s.1-%d, namespaces %s-*, workdir %s" %
                 (self.n, self.net, self.n, self.prefix, self.workdir))

    def partition(self, group_a, group_b):
        """Drop every packet between the nodes of @group_a and those of @group_b, in
        both directions, with iptables inside each node's namespace."""
        for a in group_a:
            for b in group_b:
                for x, y in ((a, b), (b, a)):
                    nx, ny = self.nodes[x], self.nodes[y]
                    _run(nx.argv("iptables", "-w", "-I", "INPUT", "-s", ny.ip, "-j", "DROP"))
                    _run(nx.argv("iptables", "-w", "-I", "OUTPUT", "-d", ny.ip, "-j", "DROP"))
        self.partitioned = True
        self.say("harness: partition %s | %s" % (sorted(group_a), sorted(group_b)))

    def isolate(self, i):
        """Cut node @i off from every other node."""
        self.partition([i], [j for j in self.nodes if j != i])

    def heal(self):
        for nd in self.nodes.values():
            _run(nd.argv("iptables", "-w", "-F", "INPUT"), check=False)
            _run(nd.argv("iptables", "-w", "-F", "OUTPUT"), check=False)
        self.partitioned = False
        self.say("harness: healed")

    # ------------------------------------------------------------ processes

    def agent_argv(self, i):
        nd = self.nodes[i]
        argv = [self.bin, "agent", "--name", nd.name, "--data-dir", nd.dir,
                "--bind", nd.ip, "--advertise", nd.ip,
                "--rpc-port", str(RPC_PORT), "--http-port", str(HTTP_PORT),
                "--dns-addr", "%s:53" % nd.ip,
                "--cgroup-parent", nd.cgroup_parent]
        if self.want_voters:
            argv += ["--voters", str(self.want_voters)]
        for k, v in sorted(self.attrs.get(i, {}).items()):
            argv += ["--attr", "%s=%s" % (k, v)]
        if i != 1:
            others = ",".join(self.nodes[j].rpc_addr for j in sorted(self.nodes) if j != i)
            argv += ["--join", others, "--token", self.join_token()]
        return argv

    def join_token(self):
        if self.token is None:
            path = os.path.join(self.nodes[1].dir, "tls", "join-token")
            self.wait_until(lambda: os.path.exists(path) and open(path).read().strip(),
                            30, "node 1's join token in " + path)
            with open(path) as f:
                self.token = f.read().strip()
        return self.token

    def start(self, i, wait=True):
        nd = self.nodes[i]
        if nd.alive():
            raise RuntimeError("node %d is already running (pid %d)" % (i, nd.proc.pid))
        with open(nd.log_path, "ab") as logf:
            logf.write(("---- harness: start %d of n%d at %.3f\n" %
                        (nd.started + 1, i, time.time())).encode())
            logf.flush()
            nd.proc = subprocess.Popen(nd.argv(*self.agent_argv(i)), stdout=logf,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        nd.started += 1
        if wait:
            self.wait_until(lambda: self._up(i), 30, "node %d's API" % i)

    def _up(self, i):
        nd = self.nodes[i]
        if not nd.alive():
            raise RuntimeError("node %d exited with %s:\n%s" %
                               (i, nd.proc.returncode, nd.tail(30)))
        return self.api(i, "GET", "/ping", timeout=1)[0] == 200

    def start_all(self):
        """Node 1 bootstraps; the others join it, one after the other."""
        self.start(1)
        self.leader(among=[1], timeout=30)
        for i in sorted(self.nodes):
            if i != 1:
                self.start(i)

    def kill9(self, i):
        nd = self.nodes[i]
        if nd.alive():
            os.kill(nd.proc.pid, signal.SIGKILL)
            nd.proc.wait()
            self.say("harness: kill -9 node %d (pid %d)" % (i, nd.proc.pid))

    def stop(self, i, timeout=10):
        """SIGTERM, SIGKILL after @timeout. Returns the exit status."""
        nd = self.nodes[i]
        if nd.alive():
            os.kill(nd.proc.pid, signal.SIGTERM)
            try:
                nd.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(nd.proc.pid, signal.SIGKILL)
                nd.proc.wait()
        return nd.proc.returncode if nd.proc else None

    def restart(self, i, wait=True):
        self.kill9(i)
        self.start(i, wait=wait)

    def alive(self):
        return [i for i in sorted(self.nodes) if self.nodes[i].alive()]

    # ------------------------------------------------------------ talking to nodes

    def api(self, i, method, path, body=None, timeout=5.0):
        """One HTTP request to node @i's API from inside its namespace. Returns
        (status, parsed JSON or raw bytes); (None, error text) when the request
        did not get an answer."""
        nd = self.nodes[i]
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            conn = http.client.HTTPConnection(nd.ip, HTTP_PORT, timeout=timeout)
            with in_netns(nd.ns_path):
                conn.connect()
            try:
                conn.request(method, path, body=data,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                raw = resp.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            return None, "%s: %s" % (type(e).__name__, e)
        try:
            return resp.status, json.loads(raw) if raw.strip()[:1] in (b"{", b"[") else raw
        except ValueError:
            return resp.status, raw

    def cli(self, i, verb, *args, timeout=60, addr=None):
        """`clusterctl VERB --addr <node i> ARGS` run inside node @i's namespace.
        Returns the CompletedProcess (returncode None when it timed out)."""
        nd = self.nodes[i]
        argv = nd.argv(self.bin, verb, "--addr", addr or nd.api_addr, *args)
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
            return subprocess.CompletedProcess(argv, None, out or "",
                                               "timed out after %ss" % timeout)

    def dig(self, i, name, qtype="A", timeout=1, tries=2):
        """Ask node @i's DNS server (from inside its namespace). Returns
        (status, [answer lines]) with status None when no answer came."""
        nd = self.nodes[i]
        r = subprocess.run(nd.argv("dig", "@" + nd.ip, "+time=%d" % timeout,
                                   "+tries=%d" % tries, "+noall", "+answer", "+comments",
                                   name, qtype),
                           capture_output=True, text=True, timeout=30)
        m = re.search(r"status: ([A-Z]+)", r.stdout)
        if r.returncode != 0 or m is None:
            return None, []
        answers = [ln.split()[-1] for ln in r.stdout.splitlines()
                   if ln and not ln.startswith(";") and len(ln.split()) >= 5]
        return m.group(1), answers

    def members(self, i, timeout=20):
        """`clusterctl members --json` on node @i: a list of dicts, or None."""
        r = self.cli(i, "members", "--json", timeout=timeout)
        if r.returncode != 0:
            return None
        try:
            body = json.loads(r.stdout)
        except ValueError:
            return None
        if isinstance(body, dict):
            body = body.get("members", [])
        return body if isinstance(body, list) else None

    def voters(self, i):
        """How many voters node @i lists (None when it cannot say)."""
        ms = self.members(i)
        return None if ms is None else sum(1 for m in ms if m.get("role") == "voter")

    def info(self, i, timeout=2.0):
        code, body = self.api(i, "GET", "/v2/info", timeout=timeout)
        return body if code == 200 and isinstance(body, dict) else None

    def metrics(self, i, timeout=2.0):
        code, body = self.api(i, "GET", "/metrics", timeout=timeout)
        if code != 200:
            return None
        out = {}
        for ln in body.decode(errors="replace").splitlines():
            parts = ln.split()
            if len(parts) == 2 and not ln.startswith("#"):
                try:
                    out[parts[0]] = float(parts[1])
                except ValueError:
                    pass
        return out

    def leader(self, among=None, timeout=30.0):
        """The index of a node that says it is the leader (among @among, default
        every running node), waiting up to @timeout."""
        box = {}

        def find():
            for i in among or self.alive():
                inf = self.info(i, timeout=1.0)
                if inf and inf.get("elected") is True:
                    box["i"] = i
                    return True
            return False

        self.wait_until(find, timeout, "a leader among %s" % (among or self.alive()),
                        interval=0.05)
        return box["i"]

    def wait_until(self, pred, timeout=30.0, what="the condition", interval=0.1):
        """Poll @pred until it returns a true value (returned) or @timeout passes
        (AssertionError naming @what and the last value)."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = pred()
            if last:
                return last
            if time.monotonic() >= deadline:
                raise AssertionError("timed out after %.0fs waiting for %s (last: %r)" %
                                     (timeout, what, last))
            time.sleep(interval)

    # ------------------------------------------------------------ apps and tasks

    def app(self, app_id, cmd=None, instances=1, **extra):
        """A small app whose tasks carry HARNESS_RUN=<suffix> in their environment,
        so that every process we caused can be found (and killed) by pid."""
        a = {"id": app_id, "cmd": cmd or "sleep 100000", "cpus": 0.05, "mem": 16,
             "disk": 0, "instances": instances, "env": {"HARNESS_RUN": self.sfx}}
        a.update(extra)
        return a

    def tasks(self, i, app_id, timeout=5.0):
        code, body = self.api(i, "GET", "/v2/apps/%s/tasks" % app_id.strip("/"),
                              timeout=timeout)
        if code != 200 or not isinstance(body, dict):
            return None
        return body.get("tasks", [])

    def running(self, i, app_id):
        ts = self.tasks(i, app_id)
        return [t for t in ts or [] if t.get("state") == "TASK_RUNNING"]

    def task_processes(self):
        """{pid: (MARATHON_APP_ID, MESOS_TASK_ID)} of every process on this machine
        whose environment has our HARNESS_RUN, read from /proc."""
        mark = ("HARNESS_RUN=" + self.sfx).encode()
        found = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % pid, "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if mark not in env:
                continue
            kv = dict(e.split(b"=", 1) for e in env if b"=" in e)
            found[int(pid)] = (kv.get(b"MARATHON_APP_ID", b"").decode(),
                               kv.get(b"MESOS_TASK_ID", b"").decode())
        return found

    def task_cgroups(self, i):
        """{cgroup name: [pids]} of the task cgroups under node @i's parent (every
        hierarchy merged)."""
        out = {}
        for h in _hierarchies():
            parent = os.path.join(h, self.nodes[i].cgroup_parent)
            if not os.path.isdir(parent):
                continue
            for name in os.listdir(parent):
                p = os.path.join(parent, name)
                if not name.startswith("task-") or not os.path.isdir(p):
                    continue
                try:
                    with open(os.path.join(p, "cgroup.procs")) as f:
                        pids = [int(x) for x in f.read().split()]
                except OSError:
                    pids = []
                out.setdefault(name, set()).update(pids)
        return {k: sorted(v) for k, v in out.items()}

    # ------------------------------------------------------------ logs

    def leaderships(self):
        """{term: set of node indices} from every node's log lines `leader term=N`."""
        terms = {}
        for i, nd in self.nodes.items():
            for m in re.finditer(r"\bleader term=(\d+)", nd.log()):
                terms.setdefault(int(m.group(1)), set()).add(i)
        return terms

    def dump_logs(self, n=40, out=print):
        for i, nd in sorted(self.nodes.items()):
            out("---- node %d (%s, %s, pid %s) log tail:\n%s" %
                (i, nd.ns, nd.ip, nd.proc.pid if nd.proc else "-", nd.tail(n)))

    # ------------------------------------------------------------ teardown

    def teardown(self):
        """Kill our agents and every task they started (by pid), remove our cgroups,
        the namespaces (and so the veths, the bridge and the iptables rules in
        them) and the work dir. Safe to call more than once."""
        if self._torn:
            return
        self._torn = True
        errors = []
        for nd in self.nodes.values():
            try:
                if nd.alive():
                    os.kill(nd.proc.pid, signal.SIGKILL)
                    nd.proc.wait(10)
            except Exception as e:  # keep tearing down
                errors.append("agent %d: %s" % (nd.i, e))
        errors += remove_run(self.sfx, self.workdir, self.own_workdir)
        if errors:
            raise RuntimeError("harness teardown: " + "; ".join(errors))


# ---------------------------------------------------------------- cleaning up

def _hierarchies():
    out = []
    for ent in sorted(os.listdir(CGROUP_ROOT)):
        p = os.path.join(CGROUP_ROOT, ent)
        if os.path.isdir(p) and not os.path.islink(p) and \
                os.path.exists(os.path.join(p, "cgroup.procs")):
            out.append(p)
    return out or [CGROUP_ROOT]


def _pids_with(mark_env=None, cmdline_part=None):
    """Pids whose environment holds the entry @mark_env, or whose command line
    contains @cmdline_part (bytes)."""
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if mark_env is not None:
                with open("/proc/%s/environ" % pid, "rb") as f:
                    if mark_env in f.read().split(b"\0"):
                        found.add(int(pid))
                        continue
            if cmdline_part is not None:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if cmdline_part in f.read():
                        found.add(int(pid))
        except OSError:
            continue
    return found


def remove_run(sfx, workdir, own_workdir):
    """Everything a run with suffix @sfx made: its agents (found by their data dir
    under @workdir), its tasks (by HARNESS_RUN=@sfx in their environment, and
    whatever is in its cgroups), its cgroups, its namespaces, its registry entry,
    and @workdir when @own_workdir. Returns the errors (a list of strings)."""
    prefix = "harness-" + sfx
    errors = []
    pids = set()
    for _ in range(50):
        pids = _pids_with(("HARNESS_RUN=" + sfx).encode(),
                          (os.path.join(workdir, "n")).encode() if workdir else None)
        for h in _hierarchies():
            for d, _dirs, files in os.walk(os.path.join(h, prefix)):
                if "cgroup.procs" in files:
                    try:
                        with open(os.path.join(d, "cgroup.procs")) as f:
                            pids.update(int(x) for x in f.read().split())
                    except OSError:
                        pass
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    else:
        errors.append("processes still alive: %s" % sorted(pids))
    for h in _hierarchies():
        top = os.path.join(h, prefix)
        for d, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            for _ in range(20):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                errors.append("cgroup %s not removed" % d)
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    names = [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()]
    # Nodes first, the bridge's namespace last.
    for name in sorted((n for n in names if n.startswith(prefix + "-")),
                       key=lambda n: n.endswith("-br")):
        r = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
        if r.returncode != 0:
            errors.append("netns %s: %s" % (name, r.stderr.strip()))
    if own_workdir and workdir and os.path.basename(workdir).startswith("harness-"):
        shutil.rmtree(workdir, ignore_errors=True)
    try:
        os.unlink(os.path.join(REGISTRY, sfx + ".json"))
    except FileNotFoundError:
        pass
    return errors


def _start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def register(sfx, workdir, own_workdir):
    """Note this run (owner pid and its start time) so that a later run can clean
    up after it if its process dies without tearing down (kill -9, CI time-out)."""
    os.makedirs(REGISTRY, exist_ok=True)
    with open(os.path.join(REGISTRY, sfx + ".json"), "w") as f:
        json.dump({"owner": os.getpid(), "start": _start_time(os.getpid()),
                   "workdir": workdir, "own_workdir": own_workdir}, f)


def sweep_stale(log=print):
    """Remove what runs whose owner process is gone left behind."""
    try:
        entries = sorted(os.listdir(REGISTRY))
    except FileNotFoundError:
        return
    for ent in entries:
        if not ent.endswith(".json"):
            continue
        try:
            with open(os.path.join(REGISTRY, ent)) as f:
                reg = json.load(f)
        except (OSError, ValueError):
            continue
        if _start_time(reg["owner"]) == reg["start"]:
            continue  # still running
        sfx = ent[:-len(".json")]
        log("harness: removing what run %s (pid %d, gone) left" % (sfx, reg["owner"]))
        errs = remove_run(sfx, reg.get("workdir"), reg.get("own_workdir", False))
        if errs:
            log("harness: sweep of %s: %s" % (sfx, "; ".join(errs)))


class DnsProbe:
    """Ask @name of every node in @nodes, again and again on a thread, until stop();
    each probe is (time, node, status, answers)."""

    def __init__(self, cluster, nodes, name, qtype="A", interval=0.1):
        self.c = cluster
        self.nodes = list(nodes)
        self.name = name
        self.qtype = qtype
        self.interval = interval
        self.results = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self._t.start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            for i in self.nodes:
                st, ans = self.c.dig(i, self.name, self.qtype)
                self.results.append((time.monotonic(), i, st, ans))
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._t.join(30)
        return self.results


def make_fixture():
    """The pytest fixture (imported by the scenario modules): a factory
    `netns_cluster(n=3, voters=None)` whose clusters are ALWAYS torn down, with each
    node's log tail printed when the test failed."""
    import pytest

    @pytest.fixture
    def netns_cluster(request, clusterctl_bin):
        why = problem()
        if why is not None:
            pytest.skip(why)
        sweep_stale()
        made = []

        def make(n=3, voters=None, start=True, **kw):
            c = NetnsCluster(clusterctl_bin, n=n, voters=voters, **kw)
            made.append(c)
            c.create()
            if start:
                c.start_all()
            return c

        try:
            yield make
        finally:
            failed = any(getattr(request.node, "rep_" + w, None) is not None and
                         getattr(request.node, "rep_" + w).failed
                         for w in ("setup", "call"))
            errors = []
            for c in made:
                if failed:
                    c.dump_logs()
                try:
                    c.teardown()
                except Exception as e:
                    errors.append(str(e))
            if errors:
                raise RuntimeError("; ".join(errors))

    return netns_cluster


def _fixture_or_none():
    try:
        return make_fixture()
    except ImportError:  # used without pytest (tests/bench/cluster)
        return None


netns_cluster = _fixture_or_none()


if __name__ == "__main__":
    import sys
    if sys.argv[1:] != ["--sweep"]:
        sys.exit("usage: netns_cluster.py --sweep   (remove what dead runs left behind)")
    sweep_stale()
