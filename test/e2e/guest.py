#!/usr/bin/python3
"""Runs a shell command in the e2e guest through its serial console (root is
logged in there by the image's autologin getty), prints its output and exits
with its status.  The console's own chatter (kernel, systemd) between the
markers is what the command printed plus whatever the guest logged then.

  guest.py SOCKET [--timeout S] -- COMMAND
"""
import argparse
import os
import re
import socket
import sys
import time


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit("usage: guest.py SOCKET [--timeout S] -- COMMAND")
    i = argv.index("--")
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args(argv[:i])
    cmd = " ".join(argv[i + 1:])
    tag = os.urandom(4).hex()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(a.socket)
    s.settimeout(0.5)
    # The typed line is echoed back: split the markers with "" so that only
    # the command's own output matches them.
    line = ("stty -echo 2>/dev/null; echo \"@@S\"\"%s@@\"; ( %s ) 2>&1; echo \"@@R\"\"%s=$?@@\"\n"
            % (tag, cmd, tag))
    s.sendall(b"\n" + line.encode())
    buf = b""
    end = time.time() + a.timeout
    pat = re.compile(rb"@@S%s@@\r?\n(.*)@@R%s=(\d+)@@" % (tag.encode(), tag.encode()), re.S)
    while time.time() < end:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
        m = pat.search(buf)
        if m:
            sys.stdout.write(m.group(1).decode(errors="replace").replace("\r\n", "\n"))
            sys.exit(int(m.group(2)))
    sys.stderr.write("guest.py: no answer within %gs to: %s\n" % (a.timeout, cmd))
    sys.exit(124)


if __name__ == "__main__":
    main()
