#!/usr/bin/python3
"""Steady traffic like an ALB's: N keep-alive connections, each sending the
next request as soon as the last answer arrived, recording every request's
start, end and outcome (the HTTP status, or the connection error).

  traffic.py run HOST:PORT PATH CONNS STOP_FILE OUT
      run until STOP_FILE exists (at most 300 s); one line per request in
      OUT: "start_ms end_ms outcome value", outcome a status or "err:NAME",
      value the body's APP_ENV (or -)
  traffic.py summary OUT T0_MS T1_MS
      the requests that overlap [T0, T1] (a reload) and all of them, as
      "key=value" lines: total, window, window_non2xx, window_errors,
      non2xx, errors, max_ms, window_max_ms, p50_ms, p99_ms, first_new_ms
      (after T0, when the last value seen first answered), values
"""
import http.client
import json
import os
import sys
import threading
import time


def now_ms():
    return time.time() * 1000.0


def worker(host, port, path, stop_file, deadline, out, lock):
    conn = None
    rows = []
    while not os.path.exists(stop_file) and time.time() < deadline:
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=30)
        t0 = now_ms()
        value = "-"
        try:
            conn.request("GET", path, headers={"User-Agent": "anb-traffic"})
            resp = conn.getresponse()
            body = resp.read()
            outcome = str(resp.status)
            if resp.status == 200:
                try:
                    value = json.loads(body).get("APP_ENV") or "-"
                except ValueError:
                    pass
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:  # every failure counts; a new connection follows
            outcome = "err:" + type(e).__name__
            conn.close()
            conn = None
        rows.append("%.1f %.1f %s %s\n" % (t0, now_ms(), outcome, value))
    if conn is not None:
        conn.close()
    with lock:
        out.writelines(rows)


def run(addr, path, conns, stop_file, out_path):
    host, port = addr.rsplit(":", 1)
    lock = threading.Lock()
    deadline = time.time() + 300
    with open(out_path, "w") as out:
        threads = [threading.Thread(target=worker, args=(host, int(port), path, stop_file, deadline, out, lock))
                   for _ in range(int(conns))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def summary(out_path, t0, t1):
    t0, t1 = float(t0), float(t1)
    rows = []
    with open(out_path) as f:
        for line in f:
            s, e, outcome, value = line.split()
            rows.append((float(s), float(e), outcome, value))
    rows.sort()
    window = [r for r in rows if r[1] >= t0 and r[0] <= t1]
    bad = lambda r: not r[2].startswith("2")
    err = lambda r: r[2].startswith("err:")
    lat = sorted(r[1] - r[0] for r in rows) or [0.0]
    wlat = [r[1] - r[0] for r in window] or [0.0]
    values = []
    for r in rows:
        if r[3] != "-" and (not values or values[-1] != r[3]):
            values.append(r[3])
    first_new = next((r[1] - t0 for r in rows if r[0] >= t0 and values and r[3] == values[-1]), -1)
    kinds = sorted({r[2] for r in rows if bad(r)})
    print("total=%d" % len(rows))
    print("window=%d" % len(window))
    print("window_non2xx=%d" % sum(1 for r in window if bad(r) and not err(r)))
    print("window_errors=%d" % sum(1 for r in window if err(r)))
    print("non2xx=%d" % sum(1 for r in rows if bad(r) and not err(r)))
    print("errors=%d" % sum(1 for r in rows if err(r)))
    print("failures=%s" % (",".join(kinds) or "-"))
    print("max_ms=%.0f" % max(lat))
    print("window_max_ms=%.0f" % max(wlat))
    print("p50_ms=%.1f" % lat[len(lat) // 2])
    print("p99_ms=%.1f" % lat[min(len(lat) - 1, int(len(lat) * 0.99))])
    print("first_new_ms=%.0f" % first_new)
    print("values=%s" % ("→".join(values) or "-"))


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "run":
        run(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "summary":
        summary(*sys.argv[2:])
    else:
        sys.exit(__doc__)
