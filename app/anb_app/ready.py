"""Readiness probe for anb-api.service's ExecStartPost=: GET URL until it
answers 200, for at most SECONDS; exit 0 then, 1 if it never did.

  python3 -m anb_app.ready URL SECONDS

With the socket held by systemd a connection always succeeds (it waits in
the backlog); the answer comes once a new gunicorn worker has imported the
app and accepted it, which is what "ready" means for a restart.  systemd
waits for ExecStartPost= even when the main process has died meanwhile (a
gunicorn whose workers cannot import the app exits at once), so the probe
gives up as soon as $MAINPID is gone."""
import os
import sys
import time
import urllib.error
import urllib.request


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def main(url, seconds):
    # Straight to localhost, whatever *_proxy the .env may set.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + float(seconds)
    last = "no answer"
    main_pid = int(os.environ.get("MAINPID") or 0)
    while time.monotonic() < deadline:
        if main_pid > 0 and not alive(main_pid):
            print("anb_app.ready: the main process (%d) exited before %s answered" % (main_pid, url),
                  file=sys.stderr)
            return 1
        try:
            with opener.open(url, timeout=min(2.0, max(0.1, deadline - time.monotonic()))) as r:
                if r.status == 200:
                    return 0
                last = "HTTP %d" % r.status
        except urllib.error.HTTPError as e:
            last = "HTTP %d" % e.code
        except (OSError, ValueError) as e:
            last = type(e).__name__
        time.sleep(0.05)
    print("anb_app.ready: %s did not answer 200 within %s s (%s)" % (url, seconds, last), file=sys.stderr)
    return 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
