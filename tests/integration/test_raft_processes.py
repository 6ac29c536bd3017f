"""Three real raft nodes (separate processes, TCP on loopback, raft.db on disk):
commit, kill -9 the leader, elect a new one, lose nothing acknowledged."""
import time

from raftkv_client import KvClient, RaftKvCluster, kv, status


def wait_applied(cluster, ids, index, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sts = [status(cluster.client_ports[i]) for i in ids]
        if all(s and int(s["applied"]) >= index for s in sts):
            return
        time.sleep(0.05)
    raise TimeoutError("not all of %s applied %d: %s" % (ids, index, sts))


def test_three_nodes_commit_and_survive_leader_kill(procs, tmp_path):
    c = RaftKvCluster(procs, tmp_path, n=3)
    c.start_all()
    leader = c.leader()

    acked = {}
    cl = KvClient(c.client_ports[leader])
    for k in range(300):
        r = cl.req("PUT k%d v%d" % (k, k))
        assert r.startswith("OK "), r
        acked["k%d" % k] = "v%d" % k
    cl.close()
    last = int(r.split()[1])
    wait_applied(c, [1, 2, 3], last)

    # Followers refuse writes and name the leader.
    follower = next(i for i in (1, 2, 3) if i != leader)
    r = kv(c.client_ports[follower], "PUT x y")
    assert r == "ERR notleader %d" % leader

    c.p[leader].kill9()
    t0 = time.monotonic()
    survivors = [i for i in (1, 2, 3) if i != leader]
    new_leader = c.leader(timeout=10.0, among=survivors)
    assert new_leader != leader
    elected_after = time.monotonic() - t0
    print("new leader %d after %.3fs" % (new_leader, elected_after))

    for k in range(300, 400):
        c.put("k%d" % k, "v%d" % k)
        acked["k%d" % k] = "v%d" % k

    # Every acknowledged write is there, read linearizably from the new leader.
    cl = KvClient(c.client_ports[new_leader])
    for k, v in acked.items():
        assert cl.req("GET " + k) == "VAL " + v
    cl.close()

    # The killed node comes back from its raft.db and catches up.
    c.start(leader, bootstrap=True)
    st = status(c.client_ports[new_leader])
    wait_applied(c, [1, 2, 3], int(st["commit"]), timeout=15.0)
    assert int(status(c.client_ports[leader])["keys"]) == len(acked)


def test_restart_every_node_keeps_state(procs, tmp_path):
    c = RaftKvCluster(procs, tmp_path, n=3, snapshot_threshold=64)
    c.start_all()
    for k in range(200):  # past several snapshots (threshold 64)
        c.put("a%d" % k, "b%d" % k)
    for i in (1, 2, 3):
        assert c.p[i].stop() == 0
    c.start_all()
    lid = c.leader(timeout=15.0)
    cl = KvClient(c.client_ports[lid])
    for k in range(200):
        assert cl.req("GET a%d" % k) == "VAL b%d" % k
    cl.close()


def test_lagging_node_catches_up_by_snapshot(procs, tmp_path):
    c = RaftKvCluster(procs, tmp_path, n=3, snapshot_threshold=32)
    c.start(1)
    c.start(2)
    for k in range(300):
        c.put("s%d" % k, "t%d" % k)
    c.start(3)  # its log is empty; the leader has compacted: InstallSnapshot
    st = status(c.client_ports[c.leader()])
    wait_applied(c, [3], int(st["commit"]), timeout=20.0)
    assert int(status(c.client_ports[3])["keys"]) == 300


def test_garbage_on_the_raft_port_is_refused(procs, tmp_path):
    import socket
    c = RaftKvCluster(procs, tmp_path, n=3)
    c.start_all()
    lid = c.leader()
    for payload in (b"\xff" * 64, b"\x00\x00\x00\x05\x09\x00abc", b"GET / HTTP/1.1\r\n\r\n",
                    b"\x7f\xff\xff\xff\x01\x00"):
        s = socket.create_connection(("127.0.0.1", c.raft_ports[lid]))
        s.sendall(payload)
        s.settimeout(2.0)
        try:
            assert s.recv(100) == b""  # closed by the node
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
    assert all(c.p[i].alive() for i in (1, 2, 3))
    c.put("after", "garbage")
