#!/usr/bin/python3
"""The e2e test's ALB: probes GET PATH on a new connection each time and
treats anything that is not an HTTP answer (refused, reset, or slirp's
hostfwd closing at once while the guest port is closed) as "down".

  prober.py once HOST:PORT [PATH]             print the status or "down"
  prober.py until HOST:PORT STATUS SECONDS [PATH]
                                              probe every 20 ms until STATUS;
                                              print the ms it took, exit 1
                                              on timeout
"""
import socket
import sys
import time


def probe(addr, path="/health"):
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                       "User-Agent: ELB-HealthChecker/2.0\r\n\r\n" % (path, host)).encode())
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        parts = data.split(b" ", 2)
        if data.startswith(b"HTTP/") and len(parts) > 1:
            return parts[1].decode()
    except (OSError, ValueError):
        pass
    return "down"


def main():
    cmd, addr = sys.argv[1], sys.argv[2]
    if cmd == "once":
        print(probe(addr, sys.argv[3] if len(sys.argv) > 3 else "/health"))
        return 0
    want, limit = sys.argv[3], float(sys.argv[4])
    path = sys.argv[5] if len(sys.argv) > 5 else "/health"
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if probe(addr, path) == want:
            print("%.0f" % ((time.monotonic() - t0) * 1000))
            return 0
        time.sleep(0.02)
    print("timeout")
    return 1


if __name__ == "__main__":
    sys.exit(main())
