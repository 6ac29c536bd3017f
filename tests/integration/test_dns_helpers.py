"""Helpers for the DNS pytest suites: a state description as raftlog commands,
dnsd started on loopback, and dig run against it (never the machine's resolver:
every dig names @127.0.0.1 and a port)."""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import build_path

DIG = shutil.which("dig")


def need_dig():
    if DIG is None:
        pytest.skip("dig is not installed (Debian package dnsutils)")


def nodes_cmds(n=3):
    return [{"type": "node.up", "at": 1,
             "node": {"id": "n%d" % i, "address": "10.0.0.%d" % (i + 1), "attrs": {},
                      "resources": {}}} for i in range(n)]


def app_cmds(path, ntasks, healthy=True, first_ip=(10, 1, 0, 1), ports=("http", "metrics")):
    """app.put, task.assign and task.status for @ntasks running tasks of @path."""
    tid = path.strip("/").replace("/", "_")
    cmds = [{"type": "app.put", "version": "2026-01-01T00:00:00.000Z",
             "app": {"id": path, "cmd": "sleep 1000", "instances": ntasks,
                     "portDefinitions": [{"port": 0, "name": p, "protocol": "tcp"}
                                         for p in ports]}}]
    tasks = []
    for t in range(ntasks):
        n = first_ip[3] + t
        ip = "%d.%d.%d.%d" % (first_ip[0], first_ip[1], first_ip[2] + n // 250, n % 250 + 1)
        tasks.append({"id": "%s.t%d" % (tid, t), "app": path, "version": "v",
                      "node": "n%d" % (t % 3), "host": ip,
                      "ports": [31000 + 10 * t + k for k in range(len(ports))]})
    if tasks:
        cmds.append({"type": "task.assign", "at": 2, "tasks": tasks})
    if healthy:
        for t in tasks:
            cmds.append({"type": "task.status", "at": 3, "id": t["id"], "state": "running"})
    return cmds, tasks


def write_cmds(path, cmds, mode="w"):
    with open(path, mode) as f:
        for c in cmds:
            f.write(json.dumps(c) + "\n")


class Dnsd:
    def __init__(self, procs, tmp_path, cmds, extra=(), listen="127.0.0.1:0", name="dnsd"):
        self.tmp = tmp_path
        self.apply = str(tmp_path / (name + "-cmds.jsonl"))
        write_cmds(self.apply, cmds)
        port_file = str(tmp_path / (name + ".port"))
        self.zone_file = str(tmp_path / (name + ".zone"))
        self.proc = procs.start([build_path("tests", "integration", "dnsd"),
                                 "--listen", listen, "--apply", self.apply,
                                 "--state", str(tmp_path / (name + "-state.db")),
                                 "--port-file", port_file, "--zone-file", self.zone_file,
                                 "--leader", "n0"] + list(extra), name=name)
        deadline = time.monotonic() + 20
        while not os.path.exists(port_file):
            if not self.proc.alive():
                raise RuntimeError("dnsd exited:\n" + self.proc.output())
            if time.monotonic() > deadline:
                raise TimeoutError("dnsd did not start:\n" + self.proc.output())
            time.sleep(0.02)
        self.port = int(open(port_file).read())
        self.host = listen.rsplit(":", 1)[0]

    def add(self, cmds):
        """Append commands and make dnsd apply them (SIGHUP)."""
        write_cmds(self.apply, cmds, mode="a")
        os.kill(self.proc.pid, 1)


def dig(port, *args, host="127.0.0.1", timeout=10):
    """Run dig against our server; returns its stdout."""
    argv = [DIG, "-p", str(port), "@" + host, "+time=2", "+tries=1"] + list(args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return r.stdout


def status_of(out):
    m = re.search(r"status: (\w+)", out)
    return m.group(1) if m else None


def counts_of(out):
    m = re.search(r"QUERY: (\d+), ANSWER: (\d+), AUTHORITY: (\d+), ADDITIONAL: (\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else None


def flags_of(out):
    m = re.search(r";; flags: ([a-z ]*);", out)
    return set(m.group(1).split()) if m else set()


def section(out, name):
    """Records of a dig section as lists of fields."""
    marker = ";; %s SECTION:\n" % name
    if marker not in out:
        return []
    body = out.split(marker, 1)[1].split("\n\n", 1)[0]
    return [l.split() for l in body.strip().splitlines() if l and not l.startswith(";")]
