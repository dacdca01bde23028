"""The KMS rule pattern of every template, tested with EventBridge TestEventPattern on the emulator.

The patterns are read from the templates themselves (the SAM hub and spoke templates, and the
synthesized CDK templates in infra/cdk/cdk.out), never copied, and each one is tested against
every sample event in events/. Every events/*.json file needs an expectation below: a new file
fails the test until someone decides whether the rule must match it.

Run (from the repository root, emulator started with `make emulator`, CDK synthesized
with `make synth`):

    .venv/bin/python -m unittest discover -s infra/tests -v
"""

from __future__ import annotations

import json
import os
import sys
import unittest
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "scripts"))
import cfn_yaml  # noqa: E402

EVENTS_DIR = ROOT / "events"
SAM_TEMPLATES = [ROOT / "infra" / "sam" / "template.yaml", ROOT / "infra" / "sam" / "spoke.yaml", ROOT / "infra" / "sam" / "member.yaml"]
CDK_OUT = ROOT / "infra" / "cdk" / "cdk.out"
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL") or "http://127.0.0.1:4566"

# Which sample events the KMS rule must deliver (see events/README.md).
SHOULD_MATCH = {
    "replicate-key.json",
    "create-key-replica.json",
    "create-key-replica-without-metadata.json",
    "create-key-multi-region.json",
    "create-key-single-region.json",
    "put-key-policy-replica-id.json",
    "put-key-policy-replica-arn.json",
    "put-key-policy-primary.json",
    "put-key-policy-iam-user.json",
    "put-key-policy-by-remediator.json",
    "put-key-policy-single-region.json",
    "update-primary-region.json",
    "update-primary-region-new-primary.json",
    "put-key-policy-member-account.json",
}
SHOULD_NOT_MATCH = {
    "put-key-policy-error.json",
    "read-only-describe-key.json",
    "unrelated-service.json",
    "scheduled-sweep.json",
    "synchronize-multi-region-key.json",
}
# Direct-invoke payloads, not EventBridge events: nothing to match.
NOT_EVENTBRIDGE_EVENTS = {"manual-sweep.json", "sqs-sweep-work-items.json"}


def _rule_patterns(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(resource path, pattern) of every EventBridge rule with an event pattern in a template."""
    found = []
    for name, resource in (template.get("Resources") or {}).items():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Events::Rule" and "EventPattern" in props:
            found.append((name, props["EventPattern"]))
        if resource.get("Type") == "AWS::Serverless::Function":
            for event_name, event in (props.get("Events") or {}).items():
                event_props = event.get("Properties") or {}
                if event.get("Type") in ("EventBridgeRule", "CloudWatchEvent") and "Pattern" in event_props:
                    found.append((f"{name}.Events.{event_name}", event_props["Pattern"]))
    return found


def collect_patterns() -> dict[str, dict[str, Any]]:
    """Every KMS rule pattern, keyed by where it comes from."""
    patterns: dict[str, dict[str, Any]] = {}
    for path in SAM_TEMPLATES:
        for where, pattern in _rule_patterns(cfn_yaml.load(path)):
            patterns[f"{path.relative_to(ROOT)}:{where}"] = pattern
    cdk_templates = sorted(CDK_OUT.glob("*.template.json"))
    if not cdk_templates:
        raise AssertionError(f"no synthesized CDK templates in {CDK_OUT}: run `make synth` first")
    for path in cdk_templates:
        for where, pattern in _rule_patterns(json.loads(path.read_text(encoding="utf-8"))):
            patterns[f"{path.relative_to(ROOT)}:{where}"] = pattern
    return patterns


def _emulator_ready() -> str | None:
    """None when the emulator answers, else why not."""
    try:
        with urllib.request.urlopen(f"{ENDPOINT}/_localstack/health", timeout=5) as resp:
            services = json.load(resp).get("services", {})
    except (urllib.error.URLError, OSError, ValueError) as err:
        return f"{ENDPOINT} does not answer ({err})"
    if services.get("events") not in ("running", "available"):
        return f"{ENDPOINT} answers but EventBridge is {services.get('events')!r}"
    return None


class KmsRulePatternTest(unittest.TestCase):
    patterns: dict[str, dict[str, Any]]

    @classmethod
    def setUpClass(cls) -> None:
        problem = _emulator_ready()
        if problem:
            raise AssertionError(
                f"the local AWS emulator is not reachable: {problem}. "
                "Start it with `make emulator` (or point AWS_ENDPOINT_URL at one)."
            )
        cls.events = boto3.client(
            "events",
            endpoint_url=ENDPOINT,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        cls.patterns = collect_patterns()

    def test_every_template_has_its_kms_rule(self) -> None:
        sources = {where.split(":", 1)[0] for where in self.patterns}
        self.assertIn("infra/sam/template.yaml", sources)
        self.assertIn("infra/sam/spoke.yaml", sources)
        self.assertIn("infra/sam/member.yaml", sources)
        cdk = [s for s in sources if s.startswith("infra/cdk/cdk.out/")]
        self.assertGreaterEqual(len(cdk), 3, f"expected the CDK hub, a spoke and the member template, found {cdk}")
        self.assertIn("infra/cdk/cdk.out/Member.template.json", cdk)

    def test_all_templates_use_one_and_the_same_pattern(self) -> None:
        canonical = {where: json.dumps(p, sort_keys=True) for where, p in self.patterns.items()}
        distinct = set(canonical.values())
        self.assertEqual(len(distinct), 1, json.dumps(canonical, indent=2))

    def test_every_sample_event_has_an_expectation(self) -> None:
        files = {p.name for p in EVENTS_DIR.glob("*.json")}
        self.assertTrue(files, f"no sample events in {EVENTS_DIR}")
        unknown = files - SHOULD_MATCH - SHOULD_NOT_MATCH - NOT_EVENTBRIDGE_EVENTS
        self.assertFalse(
            unknown,
            f"events/ has files without an expectation in {Path(__file__).name}: {sorted(unknown)}; "
            "add each to SHOULD_MATCH or SHOULD_NOT_MATCH",
        )
        missing = (SHOULD_MATCH | SHOULD_NOT_MATCH) - files
        self.assertFalse(missing, f"expected sample events are missing from events/: {sorted(missing)}")

    def test_the_rule_matches_exactly_the_events_it_should(self) -> None:
        checked = 0
        for path in sorted(EVENTS_DIR.glob("*.json")):
            if path.name in NOT_EVENTBRIDGE_EVENTS:
                continue
            if path.name not in SHOULD_MATCH | SHOULD_NOT_MATCH:
                continue  # reported by test_every_sample_event_has_an_expectation
            event = path.read_text(encoding="utf-8")
            expected = path.name in SHOULD_MATCH
            for where, pattern in self.patterns.items():
                with self.subTest(event=path.name, rule=where):
                    result = self.events.test_event_pattern(EventPattern=json.dumps(pattern), Event=event)["Result"]
                    self.assertIs(
                        result,
                        expected,
                        f"{path.name} {'should' if expected else 'should not'} match the rule in {where}",
                    )
                    checked += 1
        self.assertGreater(checked, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
