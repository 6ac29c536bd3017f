"""Shared pytest fixtures: find the build, start real processes on free ports and
always clean them up (by pid, only the processes we started), even on failure."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("CLUSTERCTL_BUILD_DIR", os.path.join(TOP, "build"))


def build_path(*parts):
    """Path of a built artefact, e.g. build_path('cmd', 'clusterctl', 'clusterctl')."""
    p = os.path.join(BUILD, *parts)
    if not os.path.exists(p):
        pytest.fail("%s is not built: run `meson setup build && ninja -C build`" % p)
    return p


def marathon_example(name):
    """A file of ../shared/examples/marathon (beside the clone, as on CI), or its
    byte-identical copy in the app JSON fuzz corpus."""
    for d in (os.environ.get("CM_MARATHON_EXAMPLES", ""),
              os.path.join(TOP, "..", "shared", "examples", "marathon"),
              os.path.join(TOP, "tests", "fuzz", "fuzz_app_json.in")):
        p = os.path.join(d, name)
        if d and os.path.exists(p):
            return p
    pytest.fail("Marathon example %s not found" % name)


@pytest.fixture(scope="session")
def clusterctl_bin():
    return build_path("cmd", "clusterctl", "clusterctl")


def free_port(host="127.0.0.1", kind=socket.SOCK_STREAM):
    """A port the kernel just handed out and released; good enough on loopback."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host, port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening" % proc.returncode)
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("nothing listening on %s:%d after %.1fs" % (host, port, timeout))


def api(addr, method, path, body=None, timeout=10, unreachable=None):
    """One JSON call to a node's HTTP API: (status, decoded body). An HTTP error is an
    answer like any other. When the node cannot be reached, @unreachable is returned if
    given (tests that poll a node being killed pass (None, None)), else it raises."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://%s%s" % (addr, path), data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (urllib.error.URLError, OSError):
        if unreachable is None:
            raise
        return unreachable


def wait_until(fn, timeout, what, step=0.2):
    """Poll @fn until it returns something true (returned); fail the test naming
    @what and the last value after @timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    pytest.fail("timed out waiting for %s (last: %r)" % (what, last))


class Proc:
    """One started process with its log file. stop() is idempotent."""

    def __init__(self, argv, log_path, env=None, cwd=None):
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  env=env, cwd=cwd, start_new_session=True)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def kill9(self):
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.p.wait()

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after @timeout. Returns the exit status."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()
        return self.p.returncode

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


@pytest.fixture
def procs(tmp_path, request):
    """Start processes with procs.start(argv, name); all are stopped at the end and
    their logs are printed when the test failed."""

    class Procs:
        def __init__(self):
            self.items = []

        def start(self, argv, name=None, env=None, cwd=None):
            name = name or os.path.basename(argv[0])
            p = Proc(argv, str(tmp_path / ("%s-%d.log" % (name, len(self.items)))), env, cwd)
            self.items.append(p)
            return p

    ps = Procs()
    yield ps
    for p in ps.items:
        p.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for p in ps.items:
            print("---- log of %s (pid %d)\n%s" % (" ".join(p.argv), p.pid, p.output()[-4000:]))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
