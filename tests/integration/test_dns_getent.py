"""The libc resolver as the client: `getent hosts web.cluster` through a
resolv.conf that names our server. Everything happens inside a private mount and
network namespace created for the test (unshare -m -n): dnsd listens on
127.0.0.1:53 of that namespace's own loopback, and a temporary resolv.conf is
bind-mounted over /etc/resolv.conf there only. The machine's resolv.conf and
network are never touched. Needs root and util-linux's unshare; skipped
otherwise."""
import os
import shutil
import subprocess

import pytest

from conftest import build_path
from test_dns_helpers import app_cmds, nodes_cmds, write_cmds

SCRIPT = r"""
set -eu
ip link set lo up
# getaddrinfo's AI_ADDRCONFIG (getent ahosts) wants an IPv4 address other than
# 127.0.0.1; glibc counts one on lo too.
if ip addr add 192.0.2.100/32 dev lo; then
    echo "== addrconfig"
fi
mount --bind "$RESOLV" /etc/resolv.conf
"$DNSD" --listen 127.0.0.1:53 --apply "$CMDS" --state "$STATE" --port-file "$PORTF" \
    --threads 1 2>"$LOG" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
i=0
while [ ! -e "$PORTF" ]; do
    i=$((i + 1)); [ $i -lt 200 ] || { echo "dnsd did not start"; exit 1; }
    sleep 0.05
done
echo "== hosts web.cluster"; getent hosts web.cluster || echo "rc=$?"
echo "== ahostsv4 web.cluster"; getent ahostsv4 web.cluster || echo "rc=$?"
echo "== hosts api.backend.shop.cluster"; getent hosts api.backend.shop.cluster || echo "rc=$?"
echo "== hosts n1.node.cluster"; getent hosts n1.node.cluster || echo "rc=$?"
echo "== hosts nope.cluster"; getent hosts nope.cluster || echo "rc=$?"
echo "== end"
"""


def can_unshare():
    if os.geteuid() != 0:
        return "needs root (unshare -m -n, port 53)"
    for tool in ("unshare", "ip", "getent", "mount"):
        if shutil.which(tool) is None:
            return "%s is not installed" % tool
    r = subprocess.run(["unshare", "-m", "-n", "true"], capture_output=True)
    if r.returncode != 0:
        return "unshare -m -n is not allowed here: %s" % r.stderr.decode().strip()
    return None


def test_getent_resolves_through_our_server(tmp_path):
    why = can_unshare()
    if why:
        pytest.skip(why)
    web, _ = app_cmds("/web", 2, first_ip=(10, 1, 0, 0))
    api, _ = app_cmds("/shop/backend/api", 1, first_ip=(10, 3, 0, 0))
    cmds = tmp_path / "cmds.jsonl"
    write_cmds(str(cmds), nodes_cmds(3) + web + api)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# test resolv.conf, bind-mounted in a private namespace\n"
                      "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    env = dict(os.environ, RESOLV=str(resolv), DNSD=build_path("tests", "integration", "dnsd"),
               CMDS=str(cmds), STATE=str(tmp_path / "state.db"),
               PORTF=str(tmp_path / "port"), LOG=str(tmp_path / "dnsd.log"))
    r = subprocess.run(["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", SCRIPT],
                       capture_output=True, text=True, env=env, timeout=60)
    out = r.stdout
    log = (tmp_path / "dnsd.log").read_text() if (tmp_path / "dnsd.log").exists() else ""
    assert r.returncode == 0, out + r.stderr + log
    parts = dict(p.split("\n", 1) for p in out.split("== ")[1:])
    hosts = parts["hosts web.cluster"].split()
    assert hosts[0] in ("10.1.0.1", "10.1.0.2") and hosts[1] == "web.cluster", out
    if "addrconfig" in parts:
        v4 = {l.split()[0] for l in parts["ahostsv4 web.cluster"].strip().splitlines()}
        assert v4 == {"10.1.0.1", "10.1.0.2"}, out
    assert parts["hosts api.backend.shop.cluster"].split()[0] == "10.3.0.1", out
    assert parts["hosts n1.node.cluster"].split()[0] == "10.0.0.2", out
    assert parts["hosts nope.cluster"].strip() == "rc=2", out  # not found
    # The machine's own resolv.conf is as it was.
    assert "127.0.0.1" not in open("/etc/resolv.conf").read() or \
        "test resolv.conf" not in open("/etc/resolv.conf").read()
