#!/usr/bin/env python3
"""Seeds the local emulator with multi-Region keys whose replicas are in sync, reformatted,
drifted or excluded, plus single-Region noise keys, and writes a manifest of what each
replica should be found to be. Talks only to a loopback emulator (LocalStack).

    .venv/bin/python bench/seed.py --primaries 50
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import random
import re
import secrets
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Clients, endpoint_url  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "baselines" / "example.json"
KINDS = ("in_sync", "reformatted", "drifted", "excluded")
EXCLUDE_TAG = "kms-replica-guard:exclude"
RUN_TAG = "kms-replica-guard-bench:run"


# ---------------------------------------------------------------------------- policies


def render(template: str, region: str, account: str, partition: str = "aws") -> str:
    return (
        template.replace("{{Partition}}", partition)
        .replace("{{AccountId}}", account)
        .replace("{{Region}}", region)
    )


def default_policy(account: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Id": "key-default-1",
            "Statement": [
                {
                    "Sid": "Enable IAM User Permissions",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        }
    )


def with_extra_statement(rendered: str, account: str) -> str:
    doc = json.loads(rendered)
    doc["Statement"].append(
        {
            "Sid": "BenchOutOfBandGrant",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account}:role/someone-else"},
            "Action": ["kms:Decrypt", "kms:ReEncrypt*"],
            "Resource": "*",
        }
    )
    return json.dumps(doc, indent=2)


def _listify(v):
    return v if isinstance(v, list) else [v]


def _shuffled(d: dict, rng: random.Random) -> dict:
    items = list(d.items())
    if len(items) > 1:
        original = [k for k, _ in items]
        while [k for k, _ in items] == original:
            rng.shuffle(items)
    return dict(items)


def _recase_action(action: str, rng: random.Random) -> str:
    prefix, _, name = action.partition(":")
    style = rng.randrange(3)
    if style == 0:
        return f"{prefix.upper()}:{name.lower()}"  # KMS:decrypt
    if style == 1:
        return f"{prefix.capitalize()}:{name.upper()}"  # Kms:DECRYPT
    return f"{prefix.upper()}:{name.swapcase()}"  # KMS:dECRYPT


def reformat(rendered: str, account: str, rng: random.Random) -> str:
    """The same policy under the tool's equivalence rules, written very differently."""
    doc = json.loads(rendered)
    root = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):root$")
    statements = []
    for st in doc["Statement"]:
        st = copy.deepcopy(st)
        for field in ("Action", "NotAction"):
            if field in st:
                st[field] = [_recase_action(a, rng) for a in _listify(st[field])]
        for field in ("Resource", "NotResource"):
            if field in st:
                st[field] = _listify(st[field])
        if isinstance(st.get("Principal"), dict):
            principal = {}
            for ptype, ids in st["Principal"].items():
                principal[ptype] = [
                    (root.match(i).group(1) if isinstance(i, str) and root.match(i) else i)
                    for i in _listify(ids)
                ]
            st["Principal"] = _shuffled(principal, rng)
        if isinstance(st.get("Condition"), dict):
            st["Condition"] = _shuffled(
                {op: _shuffled({k: _listify(v) for k, v in keys.items()}, rng)
                 for op, keys in st["Condition"].items()},
                rng,
            )
        if "Effect" in st:
            st["Effect"] = rng.choice([st["Effect"].lower(), st["Effect"].upper()])
        statements.append(_shuffled(st, rng))
    if len(statements) > 1:
        original = list(statements)
        while statements == original:
            rng.shuffle(statements)
    doc["Statement"] = statements
    return json.dumps(_shuffled(doc, rng), separators=(",", ":"))


def canonical(text: str):
    """A Python mirror of the tool's equivalence rules, used as a self-check."""
    doc = json.loads(text)
    root = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):root$")

    def strings(v):
        return frozenset(json.dumps(x) if not isinstance(x, str) else x for x in _listify(v))

    def statement(st):
        out = []
        for k, v in st.items():
            if k in ("Action", "NotAction"):
                v = frozenset(a.lower() for a in _listify(v))
            elif k in ("Resource", "NotResource"):
                v = frozenset(_listify(v))
            elif k == "Effect":
                v = v.lower()
            elif k in ("Principal", "NotPrincipal") and isinstance(v, dict):
                v = frozenset(
                    (t, frozenset(root.sub(r"\1", i) for i in _listify(ids)))
                    for t, ids in v.items() if _listify(ids)
                )
            elif k == "Condition":
                v = frozenset(
                    (op, frozenset((ck.lower(), strings(cv)) for ck, cv in keys.items()))
                    for op, keys in v.items()
                )
            else:
                v = json.dumps(v, sort_keys=True)
            out.append((k, v))
        return frozenset(out)

    rest = frozenset((k, json.dumps(v, sort_keys=True)) for k, v in doc.items() if k != "Statement")
    return rest, frozenset(statement(s) for s in _listify(doc["Statement"]))


# ---------------------------------------------------------------------------- plan


def key_id_for(tag: str, index: int) -> str:
    return "mrk-" + hashlib.sha256(f"{tag}:{index}".encode()).hexdigest()[:32]


def apportion(total: int, fractions: list[float]) -> list[int]:
    """Exact counts summing to total, by largest remainder."""
    s = sum(fractions)
    raw = [total * f / s for f in fractions]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)[: total - sum(counts)]:
        counts[i] += 1
    return counts


def parse_mix(text: str) -> list[float]:
    parts = text.split(":")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError("--mix needs four fractions in_sync:reformatted:drifted:excluded")
    try:
        values = [float(p) for p in parts]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--mix: {e}") from e
    if any(v < 0 for v in values) or sum(values) <= 0:
        raise argparse.ArgumentTypeError("--mix fractions must be >= 0 and not all zero")
    return values


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--primaries", type=int, default=1000, help="multi-Region primaries (default 1000)")
    p.add_argument("--replica-regions", default="us-west-2,eu-west-1")
    p.add_argument("--primary-region", default="us-east-1")
    p.add_argument("--single-region-factor", type=int, default=9,
                   help="single-Region keys per primary, round-robin over all Regions (default 9)")
    p.add_argument("--mix", type=parse_mix, default=parse_mix("0.4:0.3:0.25:0.05"),
                   help="replica kinds in_sync:reformatted:drifted:excluded (default 0.4:0.3:0.25:0.05)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--manifest", type=Path, default=ROOT / "bench" / ".out" / "manifest.json")
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--tag", default=None, help="run tag used in key ids (default: random)")
    a = p.parse_args(argv)
    a.replica_regions = [r.strip() for r in a.replica_regions.split(",") if r.strip()]
    if a.primaries < 0 or a.single_region_factor < 0 or a.workers < 1:
        p.error("--primaries/--single-region-factor must be >= 0 and --workers >= 1")
    if a.primary_region in a.replica_regions or len(set(a.replica_regions)) != len(a.replica_regions):
        p.error("replica Regions must be distinct and differ from the primary Region")
    a.tag = a.tag or secrets.token_hex(3)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", a.tag):
        p.error("--tag: 1-32 characters from [A-Za-z0-9_.-]")
    return a


# ---------------------------------------------------------------------------- run


class Calls:
    """Counts API calls by operation and prints progress on stderr about every 10%."""

    def __init__(self, planned: int, quiet: bool = False):
        self.quiet = quiet
        self.lock = threading.Lock()
        self.by_op: Counter = Counter()
        self.retries = 0
        self.done = 0
        self.planned = max(planned, 1)
        self.next_report = 0.1
        self.start = time.monotonic()

    def __call__(self, client, op: str, **kw):
        try:
            resp = getattr(client, op)(**kw)
        finally:
            with self.lock:
                self.by_op[op] += 1
        with self.lock:
            self.retries += resp.get("ResponseMetadata", {}).get("RetryAttempts", 0)
            self.done += 1
            if not self.quiet and self.done / self.planned >= self.next_report:
                el = time.monotonic() - self.start
                print(f"  {self.done}/{self.planned} calls ({100 * self.done // self.planned}%) "
                      f"{el:.1f}s {self.done / max(el, 1e-6):.0f} calls/s", file=sys.stderr, flush=True)
                while self.done / self.planned >= self.next_report:
                    self.next_report += 0.1
        return resp


def main(argv=None) -> int:
    a = parse_args(argv)
    endpoint = endpoint_url()
    clients = Clients(endpoint, pool=2)
    regions = [a.primary_region, *a.replica_regions]
    template = BASELINE.read_text()

    probe = Calls(1, quiet=True)
    account = probe(clients.get("sts", a.primary_region), "get_caller_identity")["Account"]
    try:
        probe(clients.get("kms", a.primary_region), "describe_key", KeyId=key_id_for(a.tag, 0))
        if a.primaries:
            sys.exit(f"error: keys for run tag {a.tag!r} already exist; pick another --tag")
    except clients.get("kms", a.primary_region).exceptions.NotFoundException:
        pass

    # ---- plan everything up front (deterministic for a given --seed and --tag)
    rng = random.Random(a.seed)
    n_rep = a.primaries * len(a.replica_regions)
    kinds = [k for k, n in zip(KINDS, apportion(n_rep, a.mix)) for _ in range(n)]
    rng.shuffle(kinds)
    rendered = {r: render(template, r, account) for r in regions}
    drift_seen: Counter = Counter()
    plan = []  # per primary: (index, key_id, [(region, kind, drift, policy)])
    for i in range(a.primaries):
        reps = []
        for j, region in enumerate(a.replica_regions):
            kind = kinds[i * len(a.replica_regions) + j]
            drift = None
            if kind == "in_sync":
                policy = rendered[region]
            elif kind == "reformatted":
                policy = reformat(rendered[region], account, random.Random(f"{a.seed}:{a.tag}:{i}:{region}"))
                assert policy != rendered[region]
                assert canonical(policy) == canonical(rendered[region]), "reformat changed the meaning"
            else:
                drift_seen[kind] += 1
                if drift_seen[kind] % 3 == 0:
                    drift, policy = "extra_statement", with_extra_statement(rendered[region], account)
                else:
                    drift, policy = "default_policy", default_policy(account)
                assert canonical(policy) != canonical(rendered[region])
            reps.append((region, kind, drift, policy))
        plan.append((i, key_id_for(a.tag, i), reps))
    n_single = a.primaries * a.single_region_factor
    n_excluded = sum(1 for k in kinds if k == "excluded")
    planned = a.primaries + 2 * n_rep + n_excluded + n_single

    print(f"seeding run {a.tag!r} on {endpoint}: {a.primaries} primaries in {a.primary_region}, "
          f"{n_rep} replicas in {','.join(a.replica_regions)}, {n_single} single-Region keys; "
          f"{planned} calls, {a.workers} workers", file=sys.stderr, flush=True)

    calls = Calls(planned)
    lock = threading.Lock()
    primaries, replicas = [], []
    singles: dict[str, list[str]] = defaultdict(list)

    def seed_primary(i, key_id, reps):
        home = clients.get("kms", a.primary_region)
        meta = calls(home, "create_key", MultiRegion=True, Policy=rendered[a.primary_region],
                     Description=f"bench {a.tag} primary {i}",
                     Tags=[{"TagKey": "_custom_id_", "TagValue": key_id},
                           {"TagKey": RUN_TAG, "TagValue": a.tag}])["KeyMetadata"]
        if meta["KeyId"] != key_id:
            raise RuntimeError(f"emulator ignored _custom_id_: asked {key_id}, got {meta['KeyId']}")
        done = []
        for region, kind, drift, policy in reps:
            rep = calls(home, "replicate_key", KeyId=key_id, ReplicaRegion=region)["ReplicaKeyMetadata"]
            there = clients.get("kms", region)
            calls(there, "put_key_policy", KeyId=rep["Arn"], PolicyName="default", Policy=policy)
            if kind == "excluded":
                calls(there, "tag_resource", KeyId=rep["Arn"],
                      Tags=[{"TagKey": EXCLUDE_TAG, "TagValue": "true"}])
            entry = {"arn": rep["Arn"], "region": region, "kind": kind, "primary_arn": meta["Arn"]}
            if drift:
                entry["drift"] = drift
            done.append(entry)
        with lock:
            primaries.append({"index": i, "arn": meta["Arn"]})
            replicas.extend(done)

    def seed_single(n):
        region = regions[n % len(regions)]
        meta = calls(clients.get("kms", region), "create_key",
                     Description=f"bench {a.tag} single-Region {n}",
                     Tags=[{"TagKey": RUN_TAG, "TagValue": a.tag}])["KeyMetadata"]
        with lock:
            singles[region].append(meta["Arn"])

    start = time.monotonic()
    errors = []
    with ThreadPoolExecutor(max_workers=a.workers, thread_name_prefix="seed") as pool:
        futures = [pool.submit(seed_primary, *p) for p in plan]
        # Interleave the cheap single-Region keys so every phase mixes operations.
        futures += [pool.submit(seed_single, n) for n in range(n_single)]
        for f in as_completed(futures):
            if f.exception() is not None:
                errors.append(repr(f.exception()))
    elapsed = time.monotonic() - start

    primaries.sort(key=lambda p: p["index"])
    replicas.sort(key=lambda r: (r["primary_arn"], r["region"]))
    by_kind = {k: {r: 0 for r in a.replica_regions} for k in KINDS}
    for r in replicas:
        by_kind[r["kind"]][r["region"]] += 1
    total_calls = sum(calls.by_op.values())
    manifest = {
        "run_tag": a.tag,
        "seed": a.seed,
        "endpoint": endpoint,
        "account": account,
        "primary_region": a.primary_region,
        "replica_regions": a.replica_regions,
        "regions": regions,
        "exclude_tag": EXCLUDE_TAG,
        "baseline": str(BASELINE.relative_to(ROOT)),
        "complete": not errors,
        "expected": {
            "remediate": sorted(r["arn"] for r in replicas if r["kind"] == "drifted"),
            "leave_alone": sorted(r["arn"] for r in replicas if r["kind"] in ("in_sync", "reformatted")),
            "skip_excluded": sorted(r["arn"] for r in replicas if r["kind"] == "excluded"),
        },
        "replicas": replicas,
        "primaries": primaries,
        "single_region_keys": {r: sorted(singles[r]) for r in regions},
    }
    a.manifest.parent.mkdir(parents=True, exist_ok=True)
    a.manifest.write_text(json.dumps(manifest, indent=1) + "\n")

    summary = {
        "run_tag": a.tag,
        "primaries": {a.primary_region: len(primaries)},
        "replicas": by_kind,
        "single_region_keys": {r: len(singles[r]) for r in regions},
        "api_calls": dict(sorted(calls.by_op.items())) | {"total": total_calls},
        "preflight_calls": dict(sorted(probe.by_op.items())),
        "retries": calls.retries,
        "errors": len(errors),
        "elapsed_s": round(elapsed, 2),
        "calls_per_s": round(total_calls / elapsed, 1) if elapsed > 0 else None,
        "workers": a.workers,
        "manifest": str(a.manifest),
    }
    print(json.dumps(summary, indent=2))
    if errors:
        print(f"error: {len(errors)} task(s) failed, e.g. {errors[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
