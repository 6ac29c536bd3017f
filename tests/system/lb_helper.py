#!/usr/bin/env python3
"""Backends and clients for tests/system/test_lb_system.py (run inside a netns).

  lb_helper.py server ID HOST PORT   HTTP/1.0-ish server: any request gets
                                     "<ID> <client ip>\\n"; "GET /slow/<secs>"
                                     gets "<ID>\\n" then a byte every 50 ms.
  lb_helper.py get HOST PORT N       N requests, one connection each; prints a JSON
                                     list of the first words of the answers ("ERR"
                                     for a failed one).
  lb_helper.py who HOST PORT         one request; prints the answer.
  lb_helper.py slow HOST PORT SECS OUT  a slow request; writes the backend id to OUT
                                     as soon as it is known, then "done <bytes>
                                     <seconds>" when the stream ends.
"""
import json
import socket
import socketserver
import sys
import threading
import time


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            line = self.rfile.readline().decode(errors="replace")
        except OSError:
            return
        ident = self.server.ident
        if line.startswith("GET /slow/"):
            secs = float(line.split()[1].rsplit("/", 1)[1])
            self.wfile.write(("%s\n" % ident).encode())
            self.wfile.flush()
            end = time.monotonic() + secs
            while time.monotonic() < end:
                time.sleep(0.05)
                self.wfile.write(b".")
                self.wfile.flush()
            return
        self.wfile.write(("%s %s\n" % (ident, self.client_address[0])).encode())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def request(host, port, path="/", timeout=3.0):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(("GET %s HTTP/1.0\r\n\r\n" % path).encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    return data.decode(errors="replace")


def main():
    cmd = sys.argv[1]
    if cmd == "server":
        ident, host, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
        srv = Server((host, port), Handler)
        srv.ident = ident
        print("listening", flush=True)
        srv.serve_forever()
    elif cmd == "get":
        host, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        out = []
        for _ in range(n):
            try:
                out.append(request(host, port).split()[0])
            except (OSError, IndexError):
                out.append("ERR")
        print(json.dumps(out))
    elif cmd == "who":
        print(request(sys.argv[2], int(sys.argv[3])).strip())
    elif cmd == "slow":
        host, port, secs, out = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
        t0 = time.monotonic()
        total = 0
        with socket.create_connection((host, port), timeout=30) as s, open(out, "w") as f:
            s.sendall(("GET /slow/%s HTTP/1.0\r\n\r\n" % secs).encode())
            first = b""
            while True:
                try:
                    b = s.recv(65536)
                except OSError:
                    break
                if not b:
                    break
                if not first:
                    first = b
                    f.write(b.split(b"\n")[0].decode() + "\n")
                    f.flush()
                total += len(b)
            f.write("done %d %.2f\n" % (total, time.monotonic() - t0))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    threading.current_thread().name = "main"
    main()
