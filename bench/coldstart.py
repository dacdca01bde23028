#!/usr/bin/env python3
"""Cold-start and memory benchmark of the Lambda binary against a local Runtime API.

Serves events to the release `bootstrap` and to a hello-world lambda_runtime binary built
with the same release profile (examples/hello_lambda.rs) from a local Runtime API, and
measures, per cold start:

  init        process start (just before the spawn) -> first GET .../invocation/next, in an
              init-only phase first: each binary started --init-runs times in random order
              against a bare TCP listener that timestamps the first bytes of the first poll
              (no HTTP server thread in the path, no event, no emulator traffic), then SIGKILL;
              beside the hello world, the same hello world on tokio's current-thread runtime
              (--hello-current-thread), as the function runs, for a like-for-like figure.
              The init budget is judged on this phase; the scenarios' own init column is
              context (it carries the HTTP server's and the emulator's noise)
  first resp  process start -> the first event's POST .../response
  event 1/2   event handed out -> its response, for the first and the second event of the
              same process (same event type): what lands on the first event only
  peak RSS    ru_maxrss of the process from os.wait4, for a process that served one event

The function's AWS_ENDPOINT_URL points at a small TCP relay to the emulator that timestamps
each AWS call (the emulator closes every connection, so one connection is one call): event
latency splits into time waiting on the emulator and the function's own time, and the
time from the event to the first AWS call shows what the first use of the SDK costs.
Connection reuse is therefore not exercised here (on AWS, event 2 reuses pooled HTTPS
connections and event 1 pays the TCP and TLS handshakes).

Every response is checked (in-sync / remediated / sweep summary / echo); anything else,
including a POST .../error, stops the benchmark with the response and the log.

Peak RSS: a child's ru_maxrss also counts the memory image it had before exec, i.e. a copy
of this Python process (tens of MiB with boto3 loaded). So the memory launches go through
/bin/sh (`"$@" &`, about 1 MiB before exec) with this process as child subreaper: the
binary is re-parented here and os.wait4 reads its own ru_maxrss. The timed launches spawn
the binary directly (no shell in the init time); their wait4 figure is kept in the JSON as
`ru_maxrss_direct_kib` to show the difference, and /proc VmHWM is recorded as a cross-check.

    .venv/bin/python bench/coldstart.py --manifest bench/.out/coldstart/manifest.json \\
        --bootstrap target/release/bootstrap --hello target/release/examples/hello_lambda \\
        --runs 20 --json bench/.out/coldstart/result.json

Seeding: `bench/seed.py --mix 1:0:0:0` (all replicas in sync) writes the manifest; without
--manifest this script runs it. Talks only to a loopback emulator (AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import math
import os
import platform
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

ACCOUNT = "111122223333"
SAMPLE_KEY_ID = "mrk-1234abcd12ab34cd56ef1234567890ab"
FUNCTION_NAME = "kms-replica-guard"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{FUNCTION_NAME}"
NEXT_PATH = "/2018-06-01/runtime/invocation/next"
INVOCATION_PREFIX = "/2018-06-01/runtime/invocation/"
INIT_ERROR_PATH = "/2018-06-01/runtime/init/error"
RSS_BUDGET_KIB = 25 * 1024  # 25 MiB
INIT_RATIO_BUDGET = 1.3
BINARIES = ("hello", "bootstrap")
KEEPALIVE_WARNING = ("the emulator kept a connection open: the proxy counts one call per connection, so the "
                     "waiting/own split and the call lists are not exact")
SAMPLE_METRICS = (
    "init_ms", "first_response_ms", "calls_during_init",
    "event1_ms", "event1_emulator_ms", "event1_own_ms", "event1_to_first_call_ms",
    "event2_ms", "event2_emulator_ms", "event2_own_ms", "event2_to_first_call_ms",
    "ru_maxrss_kib", "vm_hwm_kib", "ru_maxrss_direct_kib", "vm_hwm_timed_kib",
)

now_ns = time.perf_counter_ns


class BenchError(Exception):
    """A launch did not behave as expected: the benchmark stops."""


# ---------------------------------------------------------------------------- Runtime API


class Session:
    """One process's conversation with the Runtime API: the events it gets and the
    monotonic arrival time of every poll and response."""

    def __init__(self, events: list[bytes], prepare=None):
        self.events = events
        self.prepare = prepare  # called with the event index before events 2.. are handed out
        self.lock = threading.Lock()
        self.polls: list[int] = []
        self.served: list[tuple[int, str]] = []  # (time handed out, request id)
        self.responses: list[dict] = []
        self.idle = threading.Event()  # a poll arrived after the last event's response
        self.closed = threading.Event()
        self.failure: str | None = None
        self.on_idle = None  # called (in the server thread) when the idle poll arrives
        self.calls: list[dict] = []  # AWS calls seen by the emulator proxy

    def fail(self, message: str):
        with self.lock:
            if self.failure is None:
                self.failure = message
        self.idle.set()


class RuntimeApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RuntimeApiHandler)
        self.session: Session | None = None


class RuntimeApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RuntimeApiServer

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *_):
        pass

    def _send(self, status: str, body: bytes, headers: dict[str, str] | None = None):
        head = [f"HTTP/1.1 {status}", "Content-Type: application/json", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)  # one write
        self.wfile.flush()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        t = now_ns()
        s = self.server.session
        if s is None or self.path != NEXT_PATH:
            self._send("404 Not Found", b'{"errorMessage":"not found"}')
            return
        with s.lock:
            s.polls.append(t)
            index = len(s.served)
            pending = index < len(s.events) and len(s.responses) == index
        if not pending:
            # After the last response: record and hold the poll until the process is killed.
            if len(s.responses) < len(s.events):
                s.fail(f"poll #{len(s.polls)} arrived before the response to event {index}")
            if s.on_idle:
                s.on_idle()
            s.idle.set()
            s.closed.wait(120)
            self.close_connection = True
            return
        if index and s.prepare:
            try:
                s.prepare(index)
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                s.fail(f"preparing event {index + 1} failed: {e!r}")
                self.close_connection = True
                return
        request_id = str(uuid.uuid4())
        trace = f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"
        with s.lock:  # the response (and the next poll) may arrive before this thread runs again
            # Taken just before the write: the function's first AWS call may be accepted by the
            # relay before this thread is scheduled again.
            s.served.append((now_ns(), request_id))
            self._send("200 OK", s.events[index], {
                "Lambda-Runtime-Aws-Request-Id": request_id,
                "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 900_000),
                "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                "Lambda-Runtime-Trace-Id": trace,
            })

    def do_POST(self):
        t = now_ns()
        body = self._body()
        s = self.server.session
        if s is None:
            self._send("404 Not Found", b'{"errorMessage":"no session"}')
            return
        if self.path == INIT_ERROR_PATH:
            self._send("202 Accepted", b'{"status":"OK"}')
            s.fail(f"init error: {body.decode(errors='replace')[:2000]}")
            return
        rest = self.path[len(INVOCATION_PREFIX):] if self.path.startswith(INVOCATION_PREFIX) else ""
        request_id, _, kind = rest.partition("/")
        if kind not in ("response", "error"):
            self._send("404 Not Found", b'{"errorMessage":"not found"}')
            return
        with s.lock:  # recorded before the 202: the next poll follows it at once
            s.responses.append({"t": t, "request_id": request_id, "kind": kind, "body": body})
        self._send("202 Accepted", b'{"status":"OK"}')
        if kind == "error":
            s.fail(f"the function answered an error ({self.headers.get('Lambda-Runtime-Function-Error-Type')}): "
                   f"{body.decode(errors='replace')[:2000]}")


class EmulatorProxy:
    """A TCP relay in front of the emulator that timestamps every AWS call of the function
    (the emulator answers `Connection: close`, so one connection is one call): event
    latency then splits into time spent waiting on the emulator and the function's own time."""

    def __init__(self, upstream: str):
        u = urlparse(upstream)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self.session: Session | None = None
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            t = now_ns()
            threading.Thread(target=self._relay, args=(client, t, self.session), daemon=True).start()

    def _relay(self, client: socket.socket, t_accept: int, s: Session | None):
        # Recorded at once and filled in place: the function may keep its end of the socket
        # open after the response, so nothing here may wait for it.
        rec = {"accept": t_accept, "op": "?", "end": None, "closes": None}
        if s is not None:
            with s.lock:
                s.calls.append(rec)
        try:
            up = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        for c in (client, up):
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def pump(src, dst, on_data):
            try:
                while data := src.recv(65536):
                    on_data(data)
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        def on_request(data: bytes):
            if rec["op"] == "?":
                rec["op"] = call_name(data)

        # The call ends when the last byte of the response body has been relayed (the
        # emulator closes the connection a few ms later, after the function has moved on).
        response = {"buf": b"", "need": None}

        def on_response(data: bytes):
            if response["need"] is None:
                response["buf"] += data
                head, sep, _ = response["buf"].partition(b"\r\n\r\n")
                if not sep:
                    return
                fields = {}
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    fields[k.strip().lower()] = v.strip().lower()
                rec["closes"] = fields.get(b"connection") == b"close"
                length = fields.get(b"content-length")
                response["need"] = len(head) + 4 + int(length) if length and length.isdigit() else -1
            elif response["need"] > 0:
                response["buf"] += data
            if 0 < response["need"] <= len(response["buf"]) and rec["end"] is None:
                rec["end"] = now_ns()

        t_up = threading.Thread(target=pump, args=(client, up, on_request), daemon=True)
        t_up.start()
        pump(up, client, on_response)
        if rec["end"] is None:  # no Content-Length: the end of the connection ends the call
            rec["end"] = now_ns()
        t_up.join(30)
        client.close()
        up.close()

    def close(self):
        self.sock.close()


def call_name(head: bytes) -> str:
    """`kms:DescribeKey`, `cloudwatch:PutMetricData`, ... from the start of an SDK request."""
    text = head[:4096].decode("latin-1")
    for line in text.split("\r\n"):
        if line.lower().startswith("x-amz-target:"):
            target = line.split(":", 1)[1].strip()  # TrentService.DescribeKey
            return ("kms:" if target.startswith("TrentService.") else "") + target.split(".")[-1]
    first = text.split("\r\n", 1)[0]
    if "/operation/" in first:  # rpc-v2-cbor: POST /service/<Svc>/operation/<Op>
        op = first.split("/operation/", 1)[1].split()[0]
        return ("cloudwatch:" if "Granite" in first else "") + op
    return first[:60]


# ---------------------------------------------------------------------------- processes


def set_child_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS of a live process, KiB."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def spawn_direct(binary: str, env: dict, log: Path) -> int:
    return os.posix_spawn(binary, [binary], env, file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ])


def spawn_small_parent(binary: str, env: dict, log: Path) -> int:
    """Starts the binary from a forked /bin/sh, so that what it had before exec is a copy of
    a shell, not of this process; it is re-parented here (child subreaper) once sh exits."""
    r, w = os.pipe()
    try:
        sh = os.posix_spawn("/bin/sh", ["sh", "-c", 'log=$1; shift; "$@" >"$log" 2>&1 </dev/null & echo $!',
                                        "sh", str(log), binary], env,
                            file_actions=[(os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_CLOSE, r)])
    finally:
        os.close(w)
    with os.fdopen(r) as f:
        out = f.read().strip()
    _, status = os.waitpid(sh, 0)
    if status != 0 or not out.isdigit():
        raise BenchError(f"launcher failed (status {status}, output {out!r})")
    return int(out)


def launch(api: RuntimeApiServer, proxy: EmulatorProxy, binary: str, env: dict, events: list[bytes], *,
           mode: str, log: Path, timeout: float, prepare=None) -> dict:
    """One cold start: spawn, serve `events`, wait for the next poll, SIGKILL, wait4."""
    s = Session(events, prepare)
    hwm_at_poll: list[dict] = []
    pid_box: list[int] = []
    s.on_idle = lambda: hwm_at_poll.append(proc_status(pid_box[0])) if pid_box else None
    api.session = s
    proxy.session = s
    pid = None
    try:
        if mode == "timed":
            t0 = now_ns()
            pid = spawn_direct(binary, env, log)
        else:
            t0 = now_ns()
            pid = spawn_small_parent(binary, env, log)
        pid_box.append(pid)
        deadline = time.monotonic() + timeout
        exited = None
        while not s.idle.wait(0.05):
            got, status, ru = os.wait4(pid, os.WNOHANG)
            if got:
                exited = (status, ru)
                break
            if time.monotonic() > deadline:
                s.fail(f"no idle poll within {timeout:.0f} s")
        if exited is None and not hwm_at_poll:
            hwm_at_poll.append(proc_status(pid))
        if exited is None:
            os.kill(pid, signal.SIGKILL)
            _, status, ru = os.wait4(pid, 0)
        else:
            status, ru = exited
            s.fail(f"the process exited by itself (wait status {status})")
        pid = None
    finally:
        s.closed.set()
        api.session = None
        proxy.session = None
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
                os.wait4(pid, 0)
            except ChildProcessError:
                pass
    if s.failure:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise BenchError(f"{Path(binary).name} ({mode}): {s.failure}\n--- last lines of {log}:\n{tail}")
    served = [t for t, _ in s.served]
    resp = [r["t"] for r in s.responses]
    ms = lambda a, b: (b - a) / 1e6  # noqa: E731
    with s.lock:
        calls = sorted(s.calls, key=lambda c: c["accept"])
    per_event = []
    for a, b in zip(served, resp):
        mine = [c for c in calls if a <= c["accept"] < b and c["end"] is not None]
        waiting = 0  # time with at least one call in flight (calls overlap in a sweep)
        cursor = a
        for c in mine:
            lo, hi = max(c["accept"], cursor), min(c["end"], b)
            if hi > lo:
                waiting += hi - lo
                cursor = hi
        per_event.append({
            "calls": [c["op"] for c in mine],
            "emulator_ms": waiting / 1e6,
            "own_ms": ms(a, b) - waiting / 1e6,
            "to_first_call_ms": ms(a, mine[0]["accept"]) if mine else None,
        })
    return {
        "keepalive_seen": any(c["closes"] is False for c in calls),
        "init_ms": ms(t0, s.polls[0]),
        "calls_during_init": [c["op"] for c in calls if c["accept"] < s.polls[0]],
        "first_response_ms": ms(t0, resp[0]),
        "event_ms": [ms(a, b) for a, b in zip(served, resp)],
        "per_event": per_event,
        "ru_maxrss_kib": ru.ru_maxrss,
        "vm_hwm_kib": (hwm_at_poll[0] if hwm_at_poll else {}).get("VmHWM"),
        "responses": [r["body"] for r in s.responses],
    }


# ---------------------------------------------------------------------------- scenarios


def sample_event(name: str, key_id: str) -> bytes:
    return (ROOT / "events" / name).read_text().replace(SAMPLE_KEY_ID, key_id).encode()


def drift_policy() -> str:
    # Keeps the account root (the lockout check passes), adds a rogue grant.
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "EnableRootAccess", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "ColdStartBenchDrift", "Effect": "Allow", "Principal": {"AWS": "*"},
         "Action": "kms:Decrypt", "Resource": "*"}]})


def build_scenarios(manifest: dict, names: list[str], sweep_region: str, kms_for):
    reps = manifest["replicas"]
    by_region = {}
    for r in reps:
        by_region.setdefault(r["region"], []).append(r)
    in_sync_region = "us-west-2"
    drift_region = "eu-west-1"
    if not by_region.get(in_sync_region) or not by_region.get(drift_region):
        sys.exit(f"error: the manifest needs replicas in {in_sync_region} and {drift_region}")
    a = by_region[in_sync_region][0]
    # The drifted replica belongs to another family when there is one.
    b = next((r for r in by_region[drift_region] if r["primary_arn"] != a["primary_arn"]), by_region[drift_region][0])
    key_id = lambda arn: arn.rsplit("/", 1)[1]  # noqa: E731
    out = {}

    def one_outcome(arn: str, action: str):
        def check(resp: dict) -> str | None:
            o = resp.get("outcomes") or []
            got = [(x.get("key_arn"), x.get("action")) for x in o]
            if got != [(arn, action)]:
                return f"want exactly [{arn} {action}], got {got}; reasons: {[x.get('reason') for x in o]}"
            return None
        return check

    if "in-sync" in names:
        out["in-sync"] = {
            "what": f"PutKeyPolicy event (bare key id) on an in-sync {in_sync_region} replica",
            "event_file": "put-key-policy-replica-id.json",
            "event": sample_event("put-key-policy-replica-id.json", key_id(a["arn"])),
            "key_arn": a["arn"], "expect": "in-sync", "check": one_outcome(a["arn"], "in-sync"),
            "redrift": None,
        }
    if "drifted" in names:
        kms = kms_for(drift_region)
        policy = drift_policy()

        def redrift(_index=None, arn=b["arn"]):
            kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=policy,
                               BypassPolicyLockoutSafetyCheck=False)

        out["drifted"] = {
            "what": f"PutKeyPolicy event (key ARN) on a {drift_region} replica drifted before every event "
                    "(root kept + a Principal * grant); enforce mode rewrites and verifies it",
            "event_file": "put-key-policy-replica-arn.json",
            "event": sample_event("put-key-policy-replica-arn.json", key_id(b["arn"])),
            "key_arn": b["arn"], "expect": "remediated", "check": one_outcome(b["arn"], "remediated"),
            "redrift": redrift,
        }
    if "sweep" in names:
        n = sum(1 for r in reps if r["region"] == sweep_region)
        singles = len(manifest.get("single_region_keys", {}).get(sweep_region, []))

        def check_sweep(resp: dict) -> str | None:
            if resp.get("outcomes") or resp.get("errors") or resp.get("summary") != {"in-sync": n}:
                return (f"want summary {{'in-sync': {n}}} and nothing listed, got summary={resp.get('summary')} "
                        f"outcomes={resp.get('outcomes')} errors={resp.get('errors')}")
            return None

        out["sweep"] = {
            "what": f"scheduled sweep of {sweep_region}: {n} in-sync replicas, {singles} single-Region keys",
            "event_file": "scheduled-sweep.json",
            "event": sample_event("scheduled-sweep.json", SAMPLE_KEY_ID),
            "key_arn": None, "expect": f"summary in-sync={n}", "check": check_sweep, "redrift": None,
        }
    return out


def verify(binary: str, scenario: dict, responses: list[bytes]) -> None:
    for i, body in enumerate(responses):
        try:
            resp = json.loads(body)
        except ValueError:
            raise BenchError(f"{binary}: response {i + 1} is not JSON: {body[:500]!r}") from None
        if binary == "hello":
            if resp != json.loads(scenario["event"]):
                raise BenchError(f"hello: response {i + 1} is not the event echoed back")
            continue
        problem = scenario["check"](resp)
        if problem:
            raise BenchError(f"bootstrap: response {i + 1} ({scenario['expect']} expected): {problem}\n"
                             f"response: {json.dumps(resp)[:3000]}")


# ---------------------------------------------------------------------------- statistics


def stats(values: list[float]) -> dict:
    v = sorted(x for x in values if x is not None)
    if not v:
        return {}
    p90 = v[max(0, math.ceil(0.9 * len(v)) - 1)]  # nearest rank
    return {"n": len(v), "median": statistics.median(v), "p90": p90, "min": v[0], "max": v[-1]}


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_state() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"repository": str(ROOT), "commit": None, "note": "not a git checkout"}
    dirty = git("-c", "core.quotepath=off", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock", "examples")
    return {"repository": str(ROOT), "commit": commit, "uncommitted_changes_in_sources": bool(dirty),
            "changed_files": [line.strip() for line in dirty.splitlines()] if dirty else []}


def host() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"arch": platform.machine(), "kernel": platform.release(), "cpu": cpu, "cpus": os.cpu_count(),
            "python": platform.python_version()}


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default=str(ROOT / "target/release/bootstrap"))
    p.add_argument("--hello", default=str(ROOT / "target/release/examples/hello_lambda"))
    p.add_argument("--hello-current-thread", default=str(ROOT / "target/release/examples/hello_lambda_current_thread"),
                   help="the hello world on tokio's current-thread runtime (init-only phase, like-for-like figure)")
    p.add_argument("--init-only", action="store_true",
                   help="only the init-only phase (no emulator, no events): e.g. to compare two builds")
    p.add_argument("--also", action="append", default=[], metavar="NAME=BINARY",
                   help="another build timed in the same init-only rounds (e.g. to compare two builds), repeatable")
    p.add_argument("--init-runs", type=int, default=200,
                   help="init-only starts per binary before the scenarios (default 200; 0 skips the phase)")
    p.add_argument("--runs", type=int, default=20, help="cold starts per binary, scenario and launch kind (default 20)")
    p.add_argument("--warmup", type=int, default=1, help="unrecorded cold starts per binary and scenario first (default 1)")
    p.add_argument("--events", type=int, default=2, help="events per timed process (default 2; >= 2 for the event-2 figure)")
    p.add_argument("--scenarios", default="in-sync,drifted,sweep", help="comma-separated: in-sync, drifted, sweep")
    p.add_argument("--sweep-region", default="us-west-2")
    p.add_argument("--manifest", type=Path, help="from bench/seed.py --mix 1:0:0:0 (default: seed now)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--out-dir", type=Path, default=ROOT / "bench/.out/coldstart", help="logs of the last launches")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per launch")
    p.add_argument("--check-budgets", action="store_true", help="exit 3 when a budget is exceeded")
    p.add_argument("--label", default="", help="free text stored with the results (e.g. what the binaries were built from)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for both binaries (what-if runs), repeatable")
    a = p.parse_args(argv)
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    bad = set(a.scenarios) - {"in-sync", "drifted", "sweep"}
    if bad or not a.scenarios:
        p.error(f"--scenarios: unknown {sorted(bad)}")
    try:
        a.env = dict(e.split("=", 1) for e in a.env)
        a.also = dict(e.split("=", 1) for e in a.also)
    except ValueError:
        p.error("--env and --also: NAME=VALUE")
    if set(a.also) & {"hello", "hello-current-thread", "bootstrap"}:
        p.error("--also: choose a name other than hello, hello-current-thread, bootstrap")
    if a.init_only and not a.init_runs:
        p.error("--init-only needs --init-runs >= 1")
    if a.runs < 1 or a.events < 1 or a.warmup < 0 or a.init_runs < 0:
        p.error("--runs and --events must be >= 1, --warmup and --init-runs >= 0")
    for b in (a.bootstrap, a.hello) + ((a.hello_current_thread, *a.also.values()) if a.init_runs else ()):
        if not os.access(b, os.X_OK):
            p.error(f"{b} is not an executable (cargo build --release --bin bootstrap --example hello_lambda "
                    "--example hello_lambda_current_thread)")
    return a


def measure_init(binaries: dict[str, str], env: dict, runs: int, timeout: float) -> dict[str, list[float]]:
    """Init alone, `runs` starts per binary in random order: a bare listening socket stands in for
    the Runtime API and the time is taken when the first bytes of the first poll arrive (checked
    to be the GET of .../invocation/next), then the process is killed. No HTTP server thread, no
    event and no emulator traffic between spawn and poll, so the figure is the process's own."""
    out: dict[str, list[float]] = {b: [] for b in binaries}
    rng = random.Random(0x1A17)
    devnull = os.open(os.devnull, os.O_RDWR)
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(8)
        ls.settimeout(timeout)
        env = env | {"AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{ls.getsockname()[1]}"}
        try:
            for i in range(runs):
                order = list(binaries)
                rng.shuffle(order)
                for name in order:
                    t0 = now_ns()
                    pid = os.posix_spawn(binaries[name], [binaries[name]], env, file_actions=[
                        (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                        (os.POSIX_SPAWN_DUP2, devnull, 2)])
                    try:
                        try:
                            conn, _ = ls.accept()
                        except TimeoutError:
                            raise BenchError(f"{name}: no poll within {timeout:.0f} s of the start") from None
                        with conn:
                            conn.settimeout(timeout)
                            head = conn.recv(4096)
                            t1 = now_ns()
                            while b"\r\n" not in head and len(head) < 4096:
                                more = conn.recv(4096)
                                if not more:
                                    break
                                head += more
                    finally:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                    if not head.startswith(f"GET {NEXT_PATH} ".encode()):
                        raise BenchError(f"{name}: the first request was not a poll: {head[:120]!r}")
                    out[name].append((t1 - t0) / 1e6)
                if (i + 1) % 50 == 0 or i + 1 == runs:
                    print(f"    {i + 1}/{runs} rounds", flush=True)
        finally:
            os.close(devnull)
    return out


def function_env(api_port: int, endpoint: str, sweep_region: str, namespace: str) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        # What Lambda gives every function (lambda_runtime's Config::from_env).
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api_port}",
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/22/[$LATEST]coldstartbench",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", ACCOUNT),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        # The function's own configuration, as in tests/e2e/run.sh.
        "AWS_ENDPOINT_URL": endpoint,
        "REMEDIATION_MODE": "enforce",
        "BASELINE_SOURCE": f"file:{ROOT / 'baselines/example.json'}",
        "REMEDIATOR_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/kms-replica-guard-remediator",
        "METRICS_NAMESPACE": namespace,
        "SWEEP_REGIONS": sweep_region,
    }
    return env


def init_phase(a, env: dict, info: dict) -> bool:
    """The init-only phase: samples and ratios into info["init_only"]; False if it failed."""
    for k, v in {"hello-current-thread": a.hello_current_thread, **a.also}.items():
        add_binary(info, k, v)
    print(f"==> init only: {a.init_runs} starts per binary, in random order, against a bare listener", flush=True)
    init_bins = {"hello": a.hello, "hello-current-thread": a.hello_current_thread, "bootstrap": a.bootstrap,
                 **a.also}
    try:
        init_samples = measure_init(init_bins, env, a.init_runs, a.timeout)
    except BenchError as e:
        print(f"\nBENCHMARK FAILED: {e}", file=sys.stderr)
        return False
    st = {k: stats(v) for k, v in init_samples.items()}
    b, h, hct = st["bootstrap"], st["hello"], st["hello-current-thread"]
    info["init_only"] = {
        "runs": a.init_runs, "summary": st, "samples": init_samples,
        "ratio_median": b["median"] / h["median"], "ratio_min": b["min"] / h["min"],
        "ratio_median_current_thread": b["median"] / hct["median"],
        "ratio_min_current_thread": b["min"] / hct["min"],
        "also": {k: {"ratio_median": st[k]["median"] / h["median"],
                     "ratio_median_current_thread": st[k]["median"] / hct["median"]} for k in a.also},
    }
    return True


def run_init_only(a) -> int:
    """--init-only: the init-only phase alone; no emulator, no events."""
    env = function_env(0, "http://127.0.0.1:9", a.sweep_region, "KmsReplicaGuardColdStart/init-only") | a.env
    info = {"host": host(), "git": git_state(), "label": a.label, "extra_env": a.env, "binaries": {},
            "loadavg_before": loadavg()}
    add_binary(info, "hello", a.hello)
    add_binary(info, "bootstrap", a.bootstrap)
    if a.label:
        print(f"  {a.label}")
    if not init_phase(a, env, info):
        return 2
    info["loadavg_after"] = loadavg()
    report_init(info)
    verdicts = budgets({}, info)
    print_budgets(verdicts)
    return finish(a, {"info": info, "budgets": verdicts})


def add_binary(info: dict, name: str, path: str) -> None:
    """Records a timed binary (path, size, hash) in info["binaries"] and prints it."""
    info["binaries"][name] = {"path": path, "bytes": os.path.getsize(path), "sha256": sha256(path)}
    print(f"  {name:9} {info['binaries'][name]['bytes']:>10,} B  {path}")


def finish(a, document: dict) -> int:
    """Writes the results to --json; with --check-budgets, exit 3 when a budget is exceeded."""
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(document, indent=1) + "\n")
        print(f"\nJSON: {a.json}")
    if a.check_budgets and not all(v["ok"] for v in document["budgets"]):
        return 3
    return 0


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.init_only:
        return run_init_only(a)
    from _common import Clients, endpoint_url  # boto3: seeding and re-drifting only

    endpoint = endpoint_url()
    a.out_dir.mkdir(parents=True, exist_ok=True)
    if a.manifest is None:
        a.manifest = a.out_dir / "manifest.json"
        subprocess.run([sys.executable, str(HERE / "seed.py"), "--primaries", "10", "--single-region-factor", "2",
                        "--mix", "1:0:0:0", "--manifest", str(a.manifest)], check=True, stdout=subprocess.DEVNULL)
    manifest = json.loads(a.manifest.read_text())
    if not manifest.get("complete"):
        sys.exit(f"error: {a.manifest} is from an incomplete seed")
    clients = Clients(endpoint)
    scenarios = build_scenarios(manifest, a.scenarios, a.sweep_region, lambda r: clients.get("kms", r))
    set_child_subreaper()

    api = RuntimeApiServer()
    threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    proxy = EmulatorProxy(endpoint)
    env = function_env(api.server_address[1], f"http://127.0.0.1:{proxy.port}", a.sweep_region,
                       f"KmsReplicaGuardColdStart/{manifest['run_tag']}") | a.env
    binaries = {"hello": a.hello, "bootstrap": a.bootstrap}
    info = {
        "host": host(),
        "note": f"both binaries built for and run on the host ({platform.machine()}); the deployed function "
                "is arm64 (Graviton), which cannot run here",
        "git": git_state(),
        "binaries": {},
        "runtime_api": f"127.0.0.1:{api.server_address[1]} (local, Python ThreadingHTTPServer)",
        "emulator": endpoint,
        "emulator_proxy": f"the function's AWS_ENDPOINT_URL is a timestamping TCP relay (127.0.0.1:{proxy.port}) "
                          f"to {endpoint}",
        "runs": a.runs, "warmup": a.warmup, "events_per_timed_process": a.events,
        "function_env": {k: v for k, v in env.items() if k not in ("AWS_SECRET_ACCESS_KEY", "PATH", "HOME")},
        "extra_env": a.env,
        "label": a.label,
        "loadavg_before": loadavg(),
        "warnings": [],
    }
    print(f"host {info['host']['arch']} ({info['host']['cpu']}, {info['host']['cpus']} CPUs): {info['note']}")
    for k, v in binaries.items():
        add_binary(info, k, v)
    if a.label:
        print(f"  {a.label}")
    if a.env:
        print(f"  extra environment (both binaries): {a.env}")
    if info["git"].get("uncommitted_changes_in_sources"):
        print(f"  note: {ROOT} has uncommitted source changes at HEAD {info['git']['commit'][:12]}: "
              f"{info['git']['changed_files']}")

    if a.init_runs and not init_phase(a, env, info):
        return 2

    results: dict = {}
    started = time.monotonic()
    try:
        for name, sc in scenarios.items():
            print(f"==> {name}: {sc['what']}", flush=True)
            events = [sc["event"]] * a.events
            redrift = sc["redrift"]
            samples = {b: {m: [] for m in SAMPLE_METRICS} for b in BINARIES}
            calls_seen: dict = {}
            for i in range(-a.warmup, a.runs):
                order = BINARIES if i % 2 == 0 else BINARIES[::-1]
                for b in order:
                    for mode in ("timed", "memory"):
                        if redrift:
                            redrift()
                        n_events = a.events if mode == "timed" else 1
                        r = launch(api, proxy, binaries[b], env, events[:n_events], mode=mode,
                                   log=a.out_dir / f"{name}.{b}.{mode}.log", timeout=a.timeout,
                                   prepare=(lambda _i: redrift()) if redrift else None)
                        verify(b, sc, r["responses"])
                        if r["keepalive_seen"] and KEEPALIVE_WARNING not in info["warnings"]:
                            info["warnings"].append(KEEPALIVE_WARNING)
                            print(f"  warning: {KEEPALIVE_WARNING}", flush=True)
                        if i < 0:
                            continue
                        sb = samples[b]
                        if mode == "timed":
                            sb["init_ms"].append(r["init_ms"])
                            sb["first_response_ms"].append(r["first_response_ms"])
                            sb["calls_during_init"].append(len(r["calls_during_init"]))
                            for k, (lat, pe) in enumerate(zip(r["event_ms"][:2], r["per_event"][:2]), 1):
                                sb[f"event{k}_ms"].append(lat)
                                sb[f"event{k}_emulator_ms"].append(pe["emulator_ms"])
                                sb[f"event{k}_own_ms"].append(pe["own_ms"])
                                sb[f"event{k}_to_first_call_ms"].append(pe["to_first_call_ms"])
                                calls_seen.setdefault(b, {}).setdefault(f"event{k}", pe["calls"])
                            sb["ru_maxrss_direct_kib"].append(r["ru_maxrss_kib"])
                            sb["vm_hwm_timed_kib"].append(r["vm_hwm_kib"])
                        else:
                            sb["ru_maxrss_kib"].append(r["ru_maxrss_kib"])
                            sb["vm_hwm_kib"].append(r["vm_hwm_kib"])
                if i >= 0 and ((i + 1) % 5 == 0 or i + 1 == a.runs):
                    print(f"    {i + 1}/{a.runs} runs ({time.monotonic() - started:.0f} s)", flush=True)
            summary = {b: {m: stats(v) for m, v in samples[b].items()} for b in BINARIES}
            hi, bo = summary["hello"]["init_ms"], summary["bootstrap"]["init_ms"]
            results[name] = {
                "what": sc["what"], "event": f"events/{sc['event_file']} (key id rewritten)",
                "key_arn": sc["key_arn"], "expected": sc["expect"],
                "init_ratio_median": bo["median"] / hi["median"],
                "init_ratio_min": bo["min"] / hi["min"],
                "calls_per_event": calls_seen.get("bootstrap", {}),
                "summary": summary, "samples": samples,
            }
    except BenchError as e:
        print(f"\nBENCHMARK FAILED: {e}", file=sys.stderr)
        return 2
    finally:
        api.shutdown()
        proxy.close()
    # Init does not depend on the event: all scenarios pooled give the steadiest figure.
    pooled = {b: stats([x for r in results.values() for x in r["samples"][b]["init_ms"]]) for b in BINARIES}
    info["init_all_scenarios"] = {**pooled, "ratio_median": pooled["bootstrap"]["median"] / pooled["hello"]["median"],
                                  "ratio_min": pooled["bootstrap"]["min"] / pooled["hello"]["min"]}
    info["loadavg_after"] = loadavg()
    info["elapsed_s"] = round(time.monotonic() - started, 1)
    report(results, info)
    verdicts = budgets(results, info)
    return finish(a, {"info": info, "budgets": verdicts, "scenarios": results})


def budgets(results: dict, info: dict | None = None) -> list[dict]:
    out = []
    init_only = (info or {}).get("init_only")
    if init_only:
        ratio = init_only["ratio_median"]
        out.append({"scenario": "init", "budget": f"init <= {INIT_RATIO_BUDGET}x hello-world (init-only phase, medians)",
                    "value": round(ratio, 3), "ok": ratio <= INIT_RATIO_BUDGET})
    elif info and "init_all_scenarios" in info:
        ratio = info["init_all_scenarios"]["ratio_median"]
        out.append({"scenario": "all", "budget": f"init <= {INIT_RATIO_BUDGET}x hello-world (medians)",
                    "value": round(ratio, 3), "ok": ratio <= INIT_RATIO_BUDGET})
    for name, r in results.items():
        if not init_only:
            ratio = r["init_ratio_median"]
            out.append({"scenario": name, "budget": f"init <= {INIT_RATIO_BUDGET}x hello-world (medians)",
                        "value": round(ratio, 3), "ok": ratio <= INIT_RATIO_BUDGET})
        rss = r["summary"]["bootstrap"]["ru_maxrss_kib"]["max"]
        out.append({"scenario": name, "budget": "peak RSS for one event <= 25 MiB (max over runs)",
                    "value": f"{rss} KiB", "ok": rss <= RSS_BUDGET_KIB})
    return out


def report(results: dict, info: dict) -> None:
    def row(label, st, unit="ms"):
        if not st:
            return f"    {label:<40} {'-':>8}"
        scale, fmt = (1024, "8.2f") if unit == "MiB" else (1, "8.2f")
        cells = " ".join(format(st[k] / scale, fmt) for k in ("median", "p90", "min", "max"))
        return f"    {label:<40} {cells}  {unit}"

    print(f"\nCold start against a local Runtime API: {info['runs']} cold starts per binary, scenario and launch "
          f"kind (+{info['warmup']} warm-up), binaries alternated; {info['events_per_timed_process']} events per "
          f"timed process; host {info['host']['arch']}; loadavg before {info['loadavg_before']}, after "
          f"{info['loadavg_after']}")
    for name, r in results.items():
        print(f"\n[{name}] {r['what']}")
        for ev, ops in r.get("calls_per_event", {}).items():
            print(f"  bootstrap AWS calls, {ev}: {', '.join(ops) or 'none'}")
        print(f"    {'':<40} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}")
        for b in BINARIES:
            s = r["summary"][b]
            print(f"  {b}")
            print(row("init: start -> first poll", s["init_ms"]))
            print(row("start -> response 1", s["first_response_ms"]))
            for k in (1, 2):
                if not s[f"event{k}_ms"]:
                    continue
                print(row(f"event {k}: served -> response", s[f"event{k}_ms"]))
                if b == "bootstrap":
                    print(row("  waiting on the emulator", s[f"event{k}_emulator_ms"]))
                    print(row("  own time (latency - waiting)", s[f"event{k}_own_ms"]))
                    print(row("  served -> first AWS call", s[f"event{k}_to_first_call_ms"]))
            print(row("peak RSS, 1 event: ru_maxrss (wait4)", s["ru_maxrss_kib"], "MiB"))
            print(row("  cross-check: VmHWM (/proc) at poll 2", s["vm_hwm_kib"], "MiB"))
        print(f"  init ratio bootstrap/hello: {r['init_ratio_median']:.2f}x (medians), {r['init_ratio_min']:.2f}x (minima)")

    print("\nSummary (medians; bootstrap RSS: median / max over the one-event processes):")
    print(f"  {'scenario':<9} {'hello init':>10} {'boot init':>10} {'ratio':>6} | {'ev1':>7} {'ev2':>7} | "
          f"{'own ev1':>7} {'own ev2':>7} {'diff':>6} | {'hello RSS':>9} {'boot RSS':>13}")
    for name, r in results.items():
        h, b = r["summary"]["hello"], r["summary"]["bootstrap"]
        med = lambda m: b[m]["median"] if b.get(m) else float("nan")  # noqa: E731
        print(f"  {name:<9} {h['init_ms']['median']:8.2f}ms {b['init_ms']['median']:8.2f}ms {r['init_ratio_median']:5.2f}x | "
              f"{med('event1_ms'):7.1f} {med('event2_ms'):7.1f} | {med('event1_own_ms'):7.2f} {med('event2_own_ms'):7.2f} "
              f"{med('event1_own_ms') - med('event2_own_ms'):6.2f} | {h['ru_maxrss_kib']['median'] / 1024:6.2f}MiB "
              f"{b['ru_maxrss_kib']['median'] / 1024:5.2f}/{b['ru_maxrss_kib']['max'] / 1024:5.2f}MiB")
    print("  (ev1/ev2: event latency, ms; own: latency minus time waiting on the emulator, ms)")
    p = info["init_all_scenarios"]
    print(f"  init, all scenarios pooled (n={p['hello']['n']} each): hello median {p['hello']['median']:.2f} / p90 "
          f"{p['hello']['p90']:.2f} / min {p['hello']['min']:.2f} ms; bootstrap {p['bootstrap']['median']:.2f} / "
          f"{p['bootstrap']['p90']:.2f} / {p['bootstrap']['min']:.2f} ms; ratio {p['ratio_median']:.2f}x (medians), "
          f"{p['ratio_min']:.2f}x (minima)")
    for w in info.get("warnings", []):
        print(f"  warning: {w}")
    report_init(info)
    print_budgets(budgets(results, info))


def report_init(info: dict) -> None:
    io = info.get("init_only")
    if not io:
        return
    print(f"\nInit only (start -> first poll at a bare listener), {io['runs']} starts per binary, random order; "
          f"loadavg before {info['loadavg_before']}, after {info.get('loadavg_after', '?')}:")
    print(f"    {'':<40} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}")
    for k in io["summary"]:
        st = io["summary"][k]
        print(f"    {k:<40} " + " ".join(format(st[m], "8.2f") for m in ("median", "p90", "min", "max")) + "  ms")
    print(f"  ratio bootstrap/hello: {io['ratio_median']:.2f}x (medians), {io['ratio_min']:.2f}x (minima)")
    print(f"  like for like, bootstrap/hello-current-thread: {io['ratio_median_current_thread']:.2f}x (medians), "
          f"{io['ratio_min_current_thread']:.2f}x (minima)")
    for k, r in io.get("also", {}).items():
        print(f"  {k}: {r['ratio_median']:.2f}x hello, {r['ratio_median_current_thread']:.2f}x hello-current-thread "
              f"(medians)")


def print_budgets(verdicts: list[dict]) -> None:
    print("\nBudgets:")
    for v in verdicts:
        print(f"  {'ok  ' if v['ok'] else 'OVER'} {v['scenario']:<8} {v['budget']}: {v['value']}")


if __name__ == "__main__":
    sys.exit(main())
