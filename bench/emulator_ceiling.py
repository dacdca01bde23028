#!/usr/bin/env python3
"""Measures how many requests per second the local emulator serves for one KMS operation
when W worker threads call it back to back for D seconds. Bounded in time (--seconds, at
most 120) and count (--max-requests); talks only to a loopback emulator.

    .venv/bin/python bench/emulator_ceiling.py --operation get-key-policy --seconds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Clients, endpoint_url  # noqa: E402

OPERATIONS = {
    "get-key-policy": lambda c, key: c.get_key_policy(KeyId=key, PolicyName="default"),
    "describe-key": lambda c, key: c.describe_key(KeyId=key),
    "list-keys": lambda c, key: c.list_keys(Limit=100),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--operation", choices=sorted(OPERATIONS), default="get-key-policy")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--key-arn", help="key to read (default: create one in --region)")
    p.add_argument("--region", default="us-east-1", help="Region when no --key-arn is given")
    p.add_argument("--max-requests", type=int, default=200_000, help="stop after this many requests")
    a = p.parse_args(argv)
    if not 1 <= a.workers <= 64:
        p.error("--workers must be 1..64")
    if not 0 < a.seconds <= 120:
        p.error("--seconds must be in (0, 120]")

    # No retries: a throttled or failed request counts as an error, not as extra load.
    clients = Clients(endpoint_url(), pool=2, retries=1)
    region = a.key_arn.split(":")[3] if a.key_arn else a.region
    key = a.key_arn
    if key is None:
        key = clients.get("kms", region).create_key(Description="bench emulator_ceiling")["KeyMetadata"]["Arn"]
    op = OPERATIONS[a.operation]

    lock = threading.Lock()
    counts = {"requests": 0, "errors": 0}
    ready = threading.Barrier(a.workers + 1)
    stop = threading.Event()

    def worker():
        c = clients.get("kms", region)  # build the client before the clock starts
        ready.wait()
        n = e = 0
        while not stop.is_set():
            try:
                op(c, key)
            except Exception:  # noqa: BLE001 - every failure is just an error count
                e += 1
            n += 1
            if n % 20 == 0:
                with lock:
                    counts["requests"] += n
                    counts["errors"] += e
                    if counts["requests"] >= a.max_requests:
                        stop.set()
                n = e = 0
        with lock:
            counts["requests"] += n
            counts["errors"] += e

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.workers)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.monotonic()
    stop.wait(a.seconds)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    elapsed = time.monotonic() - start

    print(json.dumps({
        "operation": a.operation,
        "workers": a.workers,
        "seconds": round(elapsed, 2),
        "requests": counts["requests"],
        "rps": round(counts["requests"] / elapsed, 1),
        "errors": counts["errors"],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
