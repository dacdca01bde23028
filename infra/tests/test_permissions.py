"""The roles hold no permission the function never uses, and every permission it uses.

The AWS calls are read from the Rust adapters themselves (every `.send()` chain in the non-test
code of crates/aws/src and src/, but for doctor's adapter, which runs with the operator's
credentials), so a new call without its grant, or a grant whose call was
removed, fails here rather than on a first deployment. Compared by action, for the hub's two function
roles (SAM and CDK: the remediator's, and the read-only detector's, which reports findings and
answers AWS Config and may write no key) and the two member roles (the writer's and the detector's);
resources and conditions are the templates' own tests' business.

Needs infra/cdk/cdk.out (`make synth`).
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
import unittest
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "scripts"))
import cfn_yaml  # noqa: E402

# Code that runs with the operator's credentials, never the roles': `doctor` reads a deployment back
# (trails, the function's configuration, rules, alarms) from the outside; its calls are no grant.
OPERATOR_ONLY = {ROOT / "crates" / "aws" / "src" / "deployment.rs"}
SOURCES = [p for p in sorted((ROOT / "crates" / "aws" / "src").glob("*.rs")) + sorted((ROOT / "src").rglob("*.rs")) if p not in OPERATOR_ONLY]
SAM_HUB = ROOT / "infra" / "sam" / "template.yaml"
SAM_MEMBER = ROOT / "infra" / "sam" / "member.yaml"
CDK_HUB = ROOT / "infra" / "cdk" / "cdk.out" / "Hub.template.json"
CDK_MEMBER = ROOT / "infra" / "cdk" / "cdk.out" / "Member.template.json"

# Each AWS operation the code may call, its IAM action (None: it needs none) and who calls it,
# declared once in Rust (krg-engine's `api!`, error.rs) and carried by infra/contract.json. Keyed
# here by the Rust SDK's fluent method (`ListObjectsV2` -> `list_objects_v2`).
CONTRACT = json.loads((ROOT / "infra" / "contract.json").read_text(encoding="utf-8"))


def snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


OPERATIONS: dict[str, str | None] = {snake(o["operation"]): o["iam_action"] for o in CONTRACT["operations"]}


def actions_of(caller: str) -> set[str]:
    """The IAM actions of the operations `caller` makes, as the contract declares them."""
    return {o["iam_action"] for o in CONTRACT["operations"] if caller in o["callers"] and o["iam_action"]}


# Zero-argument methods of a call chain that are not the operation.
NOT_OPERATIONS = {"send", "into_paginator", "items", "customize", "build"}
# Granted though the code never calls them, each for a reason outside the code.
NEEDED_OUTSIDE_THE_CODE = {
    "logs:CreateLogStream": "the Lambda service writes the function's log with its role",
    "logs:PutLogEvents": "the Lambda service writes the function's log with its role",
    "sqs:ReceiveMessage": "the SQS event source mapping polls the sweep queue with the function's role",
    "sqs:DeleteMessage": "the SQS event source mapping deletes the items the function took",
    "sqs:GetQueueAttributes": "the SQS event source mapping reads the queue's attributes",
    "sqs:ChangeMessageVisibility": "part of the consume grant an SQS event source gets (CDK's grantConsumeMessages)",
    "sqs:SendMessage": "Lambda sends a failed asynchronous event to the on-failure queue with the function's role",
}
# Granted only when the stack setting that needs them is set (SAM keeps them behind Conditions,
# so its template has them all; the CDK app synthesised for the checks leaves them out).
OPTIONAL = {
    "ssm:GetParameter": "BaselineSsmParameter",
    "ssm:GetParametersByPath": "BaselineSsmPath",
    "organizations:ListAccounts": "MemberAccounts=organization",
    "sts:AssumeRole": "MemberRoleName",
    "securityhub:BatchImportFindings": "SecurityHub=on",
    "config:PutEvaluations": "ConfigRule",
}
# The calls only the detector makes (the remediator reports no finding and answers no Config rule).
DETECTOR_ONLY = actions_of("detector") - actions_of("remediator")
# The calls the detector makes: the remediator's reads (keys, baselines, the organisation, member
# accounts), its two metrics, findings and Config answers. Never a KMS write.
DETECTOR_CALLS = actions_of("detector")
# What the Lambda service does with the detector's role: its log, its on-failure queue.
DETECTOR_OUTSIDE_THE_CODE = {"logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage"}
# The calls made in member accounts, through the member role: KMS.
MEMBER_CALLS = actions_of("member-remediator")
# Through the detector's member role: reads, and the findings and Config answers about the
# account's own keys (made in the account they concern).
DETECTOR_MEMBER_CALLS = actions_of("member-detector")


def called_operations() -> dict[str, set[str]]:
    """Every SDK operation of a `.send()` chain in the non-test code, with the files calling it."""
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        text = text.split("#[cfg(test)]", 1)[0]
        for send in re.finditer(r"\.send\(\)", text):
            chain = text[max(0, send.start() - 2000) : send.start()]
            start = max(chain.rfind(";"), chain.rfind("{\n"), chain.rfind("=>"))
            names = [
                n
                # A chain as rustfmt lays it out, one call a line; or `.op().send()` on one line.
                for n in re.findall(r"(?m)^\s*\.([a-z][a-z0-9_]*)\(\)\s*$", chain[start + 1 :])
                + re.findall(r"\.([a-z][a-z0-9_]*)\(\)\s*$", chain[start + 1 :])
                if n not in NOT_OPERATIONS
            ]
            if not names:
                continue
            found.setdefault(names[-1], set()).add(str(path.relative_to(ROOT)))
    return found


def role_actions(template: dict[str, Any], is_role) -> set[str]:
    """The Allow actions of the identity policies of the roles `is_role` picks (inline, and
    AWS::IAM::Policy resources attached to them)."""
    resources = template["Resources"]
    roles = {lid for lid, r in resources.items() if r["Type"] == "AWS::IAM::Role" and is_role(lid, r)}
    assert roles, "no role found"
    documents = []
    for lid in roles:
        for p in resources[lid]["Properties"].get("Policies", []):
            documents.append(p["PolicyDocument"])
    for r in resources.values():
        if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            attached = set()
            for x in r["Properties"].get("Roles", []):
                # A role attached under a condition (Fn::If): either branch.
                branches = x["Fn::If"][1:] if isinstance(x, dict) and "Fn::If" in x else [x]
                attached.update(b.get("Ref") if isinstance(b, dict) else b for b in branches)
            if attached & roles:
                documents.append(r["Properties"]["PolicyDocument"])
    actions: set[str] = set()
    for doc in documents:
        for s in doc["Statement"]:
            if s["Effect"] != "Allow":
                continue
            a = s["Action"]
            actions.update([a] if isinstance(a, str) else a)
    return actions


def lambda_role(lid: str, r: dict[str, Any]) -> bool:
    """The remediator's role (the detector's logical ids start with Detector, in SAM and CDK)."""
    doc = json.dumps(r["Properties"]["AssumeRolePolicyDocument"])
    return "lambda.amazonaws.com" in doc and not lid.startswith("Detector")


def detector_role(lid: str, r: dict[str, Any]) -> bool:
    doc = json.dumps(r["Properties"]["AssumeRolePolicyDocument"])
    return "lambda.amazonaws.com" in doc and lid.startswith("Detector")


def trusted_by(sid: str):
    """A member role, by the Sid of its trust statement (HubFunctionOnly, HubDetectorOnly)."""

    def pick(_: str, r: dict[str, Any]) -> bool:
        statements = r["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        return all("AWS" in s.get("Principal", {}) for s in statements) and [s.get("Sid") for s in statements] == [sid]

    return pick


class Permissions(unittest.TestCase):
    def setUp(self) -> None:
        self.calls = called_operations()

    def test_every_call_the_code_makes_is_declared_and_every_declared_call_is_made(self) -> None:
        unknown = {op: sorted(files) for op, files in self.calls.items() if op not in OPERATIONS}
        self.assertEqual(unknown, {}, "declare these operations, their IAM actions and callers in api! (crates/engine/src/error.rs)")
        for op in ("describe_key", "put_key_policy", "put_metric_data", "assume_role"):
            self.assertIn(op, self.calls, "the reading of the sources found the calls")
        role_calls = {snake(o["operation"]) for o in CONTRACT["operations"] if o["callers"] != ["operator"]}
        self.assertEqual(role_calls - set(self.calls), set(), "declared for a role, called nowhere")

    def test_the_remediators_declared_calls_are_the_ones_its_code_makes(self) -> None:
        self.assertEqual(actions_of("remediator"), self.called_actions() - DETECTOR_ONLY)

    def called_actions(self) -> set[str]:
        return {OPERATIONS[op] for op in self.calls if OPERATIONS.get(op)}

    def check(
        self, granted: set[str], needed: set[str], allowed: set[str], what: str, optional: set[str] = frozenset()
    ) -> None:
        unused = {g for g in granted if not any(fnmatch.fnmatchcase(n, g) for n in needed | allowed)}
        self.assertEqual(unused, set(), f"{what} grants actions nothing calls")
        missing = {n for n in needed - optional if not any(fnmatch.fnmatchcase(n, g) for g in granted)}
        self.assertEqual(missing, set(), f"{what} lacks actions the code calls")

    def test_the_function_role_allows_what_the_code_calls_and_nothing_else(self) -> None:
        needed = self.called_actions() - DETECTOR_ONLY
        for path in (SAM_HUB, CDK_HUB):
            template = cfn_yaml.load(path) if path.suffix == ".yaml" else json.loads(path.read_text())
            optional = set(OPTIONAL) if path == CDK_HUB else set()
            with self.subTest(template=path.name):
                self.check(
                    role_actions(template, lambda_role), needed, set(NEEDED_OUTSIDE_THE_CODE), path.name, optional
                )

    def test_the_detector_role_allows_what_the_detector_calls_and_no_kms_write(self) -> None:
        self.assertTrue(DETECTOR_CALLS <= self.called_actions())
        for path in (SAM_HUB, CDK_HUB):
            template = cfn_yaml.load(path) if path.suffix == ".yaml" else json.loads(path.read_text())
            # The CDK app is synthesized with securityHub=on and configRule=account (infra/infra.mk).
            # S3 reads are the detector's for an S3 baseline only (the remediator's also for its backups).
            optional = (set(OPTIONAL) | {"s3:GetObject", "s3:ListBucket"}) - DETECTOR_ONLY if path == CDK_HUB else set()
            with self.subTest(template=path.name):
                granted = role_actions(template, detector_role)
                self.check(granted, DETECTOR_CALLS, DETECTOR_OUTSIDE_THE_CODE, path.name, optional)
                writes = {g for g in granted if g.startswith("kms:") and g not in DETECTOR_CALLS}
                self.assertEqual(writes, set(), "the detector's role may change no key")

    def test_the_member_role_allows_the_member_calls_and_nothing_else(self) -> None:
        self.assertTrue(MEMBER_CALLS <= self.called_actions())
        self.assertTrue(DETECTOR_MEMBER_CALLS <= self.called_actions())
        for path in (SAM_MEMBER, CDK_MEMBER):
            template = cfn_yaml.load(path) if path.suffix == ".yaml" else json.loads(path.read_text())
            with self.subTest(template=path.name, role="member"):
                self.check(role_actions(template, trusted_by("HubFunctionOnly")), MEMBER_CALLS, set(), path.name)
            with self.subTest(template=path.name, role="detector"):
                granted = role_actions(template, trusted_by("HubDetectorOnly"))
                self.check(granted, DETECTOR_MEMBER_CALLS, set(), path.name)
                self.assertNotIn("kms:PutKeyPolicy", granted)

    def test_a_grant_nothing_calls_is_caught(self) -> None:
        with self.assertRaises(AssertionError):
            self.check({"kms:CreateGrant", "kms:DescribeKey"}, {"kms:DescribeKey"}, set(), "a role")
        with self.assertRaises(AssertionError):
            self.check({"kms:DescribeKey"}, {"kms:DescribeKey", "kms:PutKeyPolicy"}, set(), "a role")


if __name__ == "__main__":
    unittest.main()
