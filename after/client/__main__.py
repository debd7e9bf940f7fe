"""``python -m after.client``: run a remote worker from a shell.

    python -m after.client --url https://after.example:5985 --name mailer \\
        --token-file /etc/after/mailer.token --jobs mypkg.jobs --concurrency 8

``--jobs`` names modules (comma-separated, importable: installed or on ``PYTHONPATH``).
A module's jobs are its ``JOBS`` dict (name -> function) if it has one, else every
public function defined in it, by name. The token is read from a file or from
``AFTER_TOKEN``, never from the command line (``ps`` shows command lines). SIGTERM or
SIGINT stops it gracefully; a second one interrupts the running jobs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from after.client.jobs import load
from after.client.worker import Worker


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m after.client", description="A remote worker of After (docs/worker-protocol.md).")
    p.add_argument("--url", default=env("AFTER_URL"), help="the daemon's base URL (AFTER_URL)")
    p.add_argument("--name", default=env("AFTER_WORKER"), help="the worker's name (AFTER_WORKER)")
    p.add_argument("--token-file", help="a file holding the token (else AFTER_TOKEN)")
    p.add_argument("--jobs", required=True, help="modules with the jobs, comma-separated")
    p.add_argument("--concurrency", type=int, default=8, help="tasks at once (default 8)")
    p.add_argument("--host", help="the host name shown in the tasks (default: this host's)")
    p.add_argument("--ca-file", default=env("AFTER_CA_FILE"), help="a CA certificate file for an https daemon (AFTER_CA_FILE)")
    p.add_argument("--poll-wait", type=float, default=20.0, help="seconds a poll waits for a task (default 20)")
    p.add_argument("--shutdown-timeout", type=float, default=30.0, help="seconds a stop lets running jobs end (default 30)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    if not args.url or not args.name:
        p.error("--url and --name are required (or AFTER_URL and AFTER_WORKER)")
    if not 1 <= args.concurrency <= 1000:
        p.error("--concurrency: 1 to 1000")
    if args.token_file:
        try:
            with open(args.token_file) as f:
                args.token = f.read().strip()
        except OSError as exc:
            p.error(f"--token-file: {exc}")
    else:
        args.token = env("AFTER_TOKEN", "")
    if not args.token:
        p.error("no token: --token-file FILE, or AFTER_TOKEN")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        jobs = load(m.strip() for m in args.jobs.split(",") if m.strip())
    except (ImportError, TypeError) as exc:
        print(f"--jobs: {exc}", file=sys.stderr)
        return 2
    worker = Worker(
        args.url,
        args.name,
        args.token,
        concurrency=args.concurrency,
        host=args.host,
        ca_file=args.ca_file,
        poll_wait=args.poll_wait,
        shutdown_timeout=args.shutdown_timeout,
    )
    try:
        worker.run(jobs)
    except Exception as exc:
        logging.getLogger("after.client").error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    if threading.active_count() > 1:
        # A plain-function job that ignored its interruption still runs in its thread:
        # its task has been reported; do not wait for it to exit.
        logging.shutdown()
        os._exit(code)
    sys.exit(code)
