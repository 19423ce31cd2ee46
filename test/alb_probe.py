#!/usr/bin/python3
"""Probes like an ALB target-group health check: a new TCP connection per
probe, HTTP/1.1 GET with the ELB user agent, 5 s timeout.

  alb_probe.py once HOST:PORT [PATH]            print "STATUS BODY"
  alb_probe.py until HOST:PORT STATUS SECONDS   probe every 10 ms until the
                                                status is seen; print ms
  alb_probe.py raw HOST:PORT                    send stdin, print the reply
  alb_probe.py hold HOST:PORT N SECONDS         hold N idle connections open
"""
import socket
import sys
import time


def probe(addr, path="/health", timeout=5.0):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                   "User-Agent: ELB-HealthChecker/2.0\r\nAccept-Encoding: gzip, compressed\r\n\r\n"
                   % (path, host)).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body.decode()


def main():
    cmd, addr = sys.argv[1], sys.argv[2]
    if cmd == "once":
        status, body = probe(addr, sys.argv[3] if len(sys.argv) > 3 else "/health")
        print(status, body.strip())
    elif cmd == "until":
        want, limit = int(sys.argv[3]), float(sys.argv[4])
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            try:
                status, _ = probe(addr)
            except OSError:
                status = 0
            if status == want:
                print("%.0f" % ((time.monotonic() - t0) * 1000))
                return 0
            time.sleep(0.01)
        print("timeout")
        return 1
    elif cmd == "raw":
        host, port = addr.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(sys.stdin.buffer.read())
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except socket.timeout:
                data += b"\n<timeout: connection left open>"
        sys.stdout.write(data.decode(errors="replace"))
    elif cmd == "hold":
        n, secs = int(sys.argv[3]), float(sys.argv[4])
        host, port = addr.rsplit(":", 1)
        socks = []
        for _ in range(n):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"GET /health HTTP/1.1\r\n")  # never finished: a slow client
            socks.append(s)
        print("holding", len(socks), flush=True)
        time.sleep(secs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
