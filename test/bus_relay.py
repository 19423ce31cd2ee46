#!/usr/bin/python3
"""A byte relay in front of a D-Bus socket, so a test can cut the agent's
bus connection: every client connection is piped to the real bus; SIGUSR1
drops all of them (the peer sees the bus go away), new ones still work.
SIGUSR2 takes the bus down (drops all, and closes new connections at once)
until the next SIGUSR2.

  bus_relay.py LISTEN_PATH BUS_PATH
"""
import os
import selectors
import signal
import socket
import sys

listen_path, bus_path = sys.argv[1], sys.argv[2]
if os.path.exists(listen_path):
    os.unlink(listen_path)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(listen_path)
srv.listen(16)
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ)
pairs = {}
drop = False
down = False


def on_usr1(signum, frame):
    global drop
    drop = True


def on_usr2(signum, frame):
    global drop, down
    down = not down
    drop = drop or down


signal.signal(signal.SIGUSR1, on_usr1)
signal.signal(signal.SIGUSR2, on_usr2)
while True:
    if drop:
        for s in list(pairs):
            try:
                sel.unregister(s)
            except KeyError:
                pass
            s.close()
        pairs.clear()
        drop = False
    try:
        events = sel.select(timeout=0.2)
    except InterruptedError:
        continue
    for key, _ in events:
        s = key.fileobj
        if s is srv:
            c, _ = srv.accept()
            if down:
                c.close()
                continue
            b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            b.connect(bus_path)
            pairs[c], pairs[b] = b, c
            sel.register(c, selectors.EVENT_READ)
            sel.register(b, selectors.EVENT_READ)
            continue
        if s not in pairs:
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        other = pairs[s]
        if not data:
            for x in (s, other):
                sel.unregister(x)
                x.close()
                pairs.pop(x, None)
            continue
        other.sendall(data)
