"""The rule patterns of every template, tested with EventBridge TestEventPattern on the emulator.

The patterns are read from the templates themselves (the SAM hub and spoke templates, and the
synthesized CDK templates in infra/cdk/cdk.out), never copied.

- The KMS rule (source aws.kms) of every template is tested against every sample event in
  events/. Every events/*.json file needs an expectation below: a new file fails the test until
  someone decides whether the rule must match it.
- The hub's rules on the guard's own events (source kms-replica-guard, SAM and CDK: the
  notification rules of exposure drifts, writes the guardrails refused and exemptions, and the
  detector's rule, which takes every event of the guard from this account) are tested against every sample
  notification in infra/tests/fixtures/ (the events the function puts on the bus; never in
  events/, which holds what the function receives), with the same rule for new files; and, on a
  test bus of the emulator, the message each InputTransformer sends to an SNS topic is checked
  against the same template rendered independently (missing paths empty).

Run (from the repository root, emulator started with `make emulator`, CDK synthesized
with `make synth`):

    .venv/bin/python -m unittest discover -s infra/tests -v
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
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
FIXTURES_DIR = ROOT / "infra" / "tests" / "fixtures"
KMS_SOURCE = "aws.kms"
GUARD_SOURCE = "kms-replica-guard"
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
    # Tag changes: the exclude or baseline tag of a replica (or its primary) may have changed.
    # Any tag key matches; the function reads the live tags, not the event.
    "tag-resource-exclude.json",
    "untag-resource-baseline.json",
    "tag-resource-other-tag.json",
}
SHOULD_NOT_MATCH = {
    "put-key-policy-error.json",
    "read-only-describe-key.json",
    "unrelated-service.json",
    "scheduled-sweep.json",
    "synchronize-multi-region-key.json",
}
# Direct-invoke payloads, not EventBridge events: nothing to match (AWS Config invokes the
# function itself for its custom rule).
NOT_EVENTBRIDGE_EVENTS = {
    "manual-sweep.json",
    "sqs-sweep-work-items.json",
    "config-rule-change.json",
    "config-rule-oversized.json",
    "config-rule-scheduled.json",
    # The guard's own notification (source kms-replica-guard), the detector's input: the KMS rule
    # must never feed the remediator its own news.
    "drift-notification-remediated.json",
}

# The hub's rules on the guard's own events, by the detail-type that names each, with its runbook page (docs/src/runbook/<name>.md).
GUARD_RULES = {
    "exposure": ("Replica Key Policy Drift Detected", "exposuredrift"),
    "write-refused": ("Replica Key Policy Write Refused", "guardrailrefused"),
    "exemption": ("Replica Key Exemption Granted", "exemption-granted"),
}
# The detector's rule (SecurityHub on): every event of the guard, whatever its detail-type, to the
# detector function (no message: the detector re-reads the key the event names).
DETECTOR_RULE = "detector"
# Which rules each sample notification (infra/tests/fixtures/) must reach; every other rule must
# not match it. A fixture without an entry fails the test.
FIXTURE_RULES: dict[str, set[str]] = {
    "drift-public-detected.json": {"exposure", DETECTOR_RULE},
    "drift-cross-account-remediated-by-sweep.json": {"exposure", DETECTOR_RULE},
    "drift-access-remediated.json": {DETECTOR_RULE},
    "drift-unparsed-failed.json": {DETECTOR_RULE},
    "write-refused-public.json": {"write-refused", DETECTOR_RULE},
    "write-grants-access-admin.json": {DETECTOR_RULE},
    "exemption-granted.json": {"exemption", DETECTOR_RULE},
}


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


def collect_rules(source: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """(pattern, rule properties) of every rule on `source`, keyed by where it comes from."""
    rules: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    templates = [(path, cfn_yaml.load(path)) for path in SAM_TEMPLATES]
    cdk_templates = sorted(CDK_OUT.glob("*.template.json"))
    if not cdk_templates:
        raise AssertionError(f"no synthesized CDK templates in {CDK_OUT}: run `make synth` first")
    templates += [(path, json.loads(path.read_text(encoding="utf-8"))) for path in cdk_templates]
    for path, template in templates:
        for where, pattern in _rule_patterns(template):
            if source in (pattern.get("source") or []):
                name = where.split(".", 1)[0]
                props = (template["Resources"][name].get("Properties") or {}) if "." not in where else {}
                rules[f"{path.relative_to(ROOT)}:{where}"] = (pattern, props)
    return rules


def collect_patterns(source: str = KMS_SOURCE) -> dict[str, dict[str, Any]]:
    """Every rule pattern on `source` (default: the KMS rule), keyed by where it comes from."""
    return {where: pattern for where, (pattern, _) in collect_rules(source).items()}


def _emulator_ready(needed: tuple[str, ...] = ("events",)) -> str | None:
    """None when the emulator answers with every needed service, else why not."""
    try:
        with urllib.request.urlopen(f"{ENDPOINT}/_localstack/health", timeout=5) as resp:
            services = json.load(resp).get("services", {})
    except (urllib.error.URLError, OSError, ValueError) as err:
        return f"{ENDPOINT} does not answer ({err})"
    missing = {s: services.get(s) for s in needed if services.get(s) not in ("running", "available")}
    if missing:
        return f"{ENDPOINT} answers but these services are not running: {missing}"
    return None


def _client(service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def _json_path(event: dict[str, Any], path: str) -> Any:
    """The value at a scalar path ($.a.b), None when any step is missing or null."""
    value: Any = event
    for step in path.removeprefix("$.").split("."):
        if not isinstance(value, dict) or value.get(step) is None:
            return None
        value = value[step]
    return value


def with_account(pattern: Any, account: str) -> Any:
    """The pattern with {"Ref": "AWS::AccountId"} (the exposure rule's `account`) as `account`."""
    if isinstance(pattern, dict):
        if pattern == {"Ref": "AWS::AccountId"}:
            return account
        return {k: with_account(v, account) for k, v in pattern.items()}
    if isinstance(pattern, list):
        return [with_account(v, account) for v in pattern]
    return pattern


def render_input_template(transformer: dict[str, Any], event: dict[str, Any]) -> str:
    """What EventBridge makes of a string InputTemplate (a quoted JSON string): each <name>
    replaced with the value at its path, a missing path with nothing."""
    template = transformer["InputTemplate"]
    if not (template.startswith('"') and template.endswith('"')):
        raise AssertionError(f"the InputTemplate is not a quoted string: {template!r}")
    paths = transformer["InputPathsMap"]

    def one(m: re.Match[str]) -> str:
        value = _json_path(event, paths[m.group(1)])
        return "" if value is None else str(value)

    return re.sub(r"<([^>]+)>", one, template[1:-1])


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



def rule_kind(pattern: dict[str, Any]) -> str:
    """Which of GUARD_RULES a rule on the guard's events is (by its detail-type), or the detector's
    (no detail-type: every event of the guard)."""
    if set(pattern) == {"source", "account"}:
        return DETECTOR_RULE
    kinds = [k for k, (dt, _) in GUARD_RULES.items() if dt in (pattern.get("detail-type") or [])]
    if len(kinds) != 1:
        raise AssertionError(f"a rule on source {GUARD_SOURCE} that is none (or several) of {sorted(GUARD_RULES)}: {pattern}")
    return kinds[0]


class GuardEventRulesTest(unittest.TestCase):
    """The hub's notification rules on the guard's own events against the sample notifications, and their messages."""

    rules: dict[str, tuple[dict[str, Any], dict[str, Any]]]

    @classmethod
    def setUpClass(cls) -> None:
        problem = _emulator_ready(("events", "sns", "sqs", "sts"))
        if problem:
            raise AssertionError(
                f"the local AWS emulator is not reachable: {problem}. "
                "Start it with `make emulator` (or point AWS_ENDPOINT_URL at one)."
            )
        cls.events, cls.sns, cls.sqs = _client("events"), _client("sns"), _client("sqs")
        cls.account = _client("sts").get_caller_identity()["Account"]
        cls.rules = collect_rules(GUARD_SOURCE)

    def fixtures(self) -> dict[str, dict[str, Any]]:
        return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(FIXTURES_DIR.glob("*.json"))}

    def test_the_hub_templates_have_each_rule_and_the_same_one(self) -> None:
        by_kind: dict[str, dict[str, str]] = {}
        for where, (pattern, _) in self.rules.items():
            by_kind.setdefault(rule_kind(pattern), {})[where.split(":", 1)[0]] = json.dumps(pattern, sort_keys=True)
        self.assertEqual(sorted(by_kind), sorted([*GUARD_RULES, DETECTOR_RULE]))
        for kind, found in by_kind.items():
            with self.subTest(rule=kind):
                self.assertEqual(sorted(found), ["infra/cdk/cdk.out/Hub.template.json", "infra/sam/template.yaml"])
                self.assertEqual(len(set(found.values())), 1, f"SAM and CDK have different {kind} rule patterns")

    def test_every_sample_notification_has_an_expectation(self) -> None:
        files = set(self.fixtures())
        self.assertTrue(files, f"no sample notifications in {FIXTURES_DIR}")
        unknown = files - set(FIXTURE_RULES)
        self.assertFalse(unknown, f"fixtures without an expectation in {Path(__file__).name}: {sorted(unknown)}")
        missing = set(FIXTURE_RULES) - files
        self.assertFalse(missing, f"expected sample notifications are missing: {sorted(missing)}")
        for kind in [*GUARD_RULES, DETECTOR_RULE]:
            self.assertTrue([f for f, kinds in FIXTURE_RULES.items() if kind in kinds], f"no fixture the {kind} rule must deliver")
        for name, event in self.fixtures().items():
            with self.subTest(fixture=name):
                self.assertEqual(event["source"], GUARD_SOURCE)
                self.assertEqual(event["resources"], [event["detail"]["key_arn"]])

    def test_each_rule_matches_exactly_the_notifications_it_should(self) -> None:
        checked = 0
        for name, event in self.fixtures().items():
            if name not in FIXTURE_RULES:
                continue
            for where, (pattern, _) in self.rules.items():
                expected = rule_kind(pattern) in FIXTURE_RULES[name]
                with self.subTest(fixture=name, rule=where):
                    # The hub is the fixtures' account (the rules name the stack's own account).
                    hub = json.dumps(with_account(pattern, event["account"]))
                    result = self.events.test_event_pattern(EventPattern=hub, Event=json.dumps(event))["Result"]
                    self.assertIs(result, expected, f"{name} {'should' if expected else 'should not'} match the rule in {where}")
                    checked += 1
        self.assertGreater(checked, 0)

    def test_the_rules_ignore_the_guards_events_put_by_another_account(self) -> None:
        for name, kinds in sorted(FIXTURE_RULES.items()):
            if not kinds:
                continue
            event = self.fixtures()[name]
            forged = {**event, "account": "444455556666"}
            for where, (pattern, _) in self.rules.items():
                with self.subTest(fixture=name, rule=where):
                    self.assertEqual(pattern.get("account"), [{"Ref": "AWS::AccountId"}], "the rule names the stack's own account")
                    hub = json.dumps(with_account(pattern, event["account"]))
                    self.assertIs(self.events.test_event_pattern(EventPattern=hub, Event=json.dumps(forged))["Result"], False)

    def test_the_topic_gets_the_readable_message(self) -> None:
        """Each template's rule (pattern, InputTransformer) on a test bus with an SNS topic and an SQS
        subscriber: every sample notification put on the bus, the matching ones arrive as the text."""
        run = f"krg-pattern-{secrets.token_hex(3)}"
        bus = self.events.create_event_bus(Name=run)["EventBusArn"]
        topic = self.sns.create_topic(Name=run)["TopicArn"]
        queue = self.sqs.create_queue(QueueName=run)["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"})
        fixtures = self.fixtures()
        try:
            for where, (pattern, props) in self.rules.items():
                kind = rule_kind(pattern)
                if kind == DETECTOR_RULE:
                    continue  # targets the detector function, not the topic (test_the_detector_rule_targets_the_detector)
                with self.subTest(rule=where):
                    (target,) = props["Targets"]
                    transformer = target["InputTransformer"]
                    rule = f"{run}-{'sam' if where.startswith('infra/sam') else 'cdk'}-{kind}"
                    # The test bus's account stands in for the hub's.
                    self.events.put_rule(Name=rule, EventBusName=run, EventPattern=json.dumps(with_account(pattern, self.account)))
                    self.events.put_targets(
                        Rule=rule, EventBusName=run,
                        Targets=[{"Id": "topic", "Arn": topic, "InputTransformer": transformer}],
                    )
                    for event in fixtures.values():
                        self.events.put_events(Entries=[{
                            "EventBusName": run, "Source": event["source"], "DetailType": event["detail-type"],
                            "Resources": event["resources"], "Detail": json.dumps(event["detail"]),
                        }])
                    expected = sorted(render_input_template(transformer, fixtures[n]) for n, kinds in FIXTURE_RULES.items() if kind in kinds)
                    got = sorted(json.loads(m["Message"]) for m in self._drain(queue, len(expected)))
                    self.assertEqual(got, expected)
                    for text in got:
                        self.assertTrue(text.startswith("kms-replica-guard: "), text)
                        self.assertTrue(text.endswith(f" Runbook: docs/src/runbook/{GUARD_RULES[kind][1]}.md"), text)
                    self.events.remove_targets(Rule=rule, EventBusName=run, Ids=["topic"])
                    self.events.delete_rule(Name=rule, EventBusName=run)
        finally:
            self.sqs.delete_queue(QueueUrl=queue)
            self.sns.delete_topic(TopicArn=topic)
            self.events.delete_event_bus(Name=run)
        self.assertTrue(bus)

    def test_the_detector_rule_gets_every_event_of_the_guard_on_the_drift_bus_and_targets_the_detector(self) -> None:
        """Its pattern takes each sample notification (any detail-type, even one the function may add
        later) from this account and no other source; it lives on the drift bus and invokes the detector."""
        detector = {where: (p, props) for where, (p, props) in self.rules.items() if rule_kind(p) == DETECTOR_RULE}
        self.assertEqual(sorted(w.split(":", 1)[0] for w in detector), ["infra/cdk/cdk.out/Hub.template.json", "infra/sam/template.yaml"])
        probes = [
            {**next(iter(self.fixtures().values())), "detail-type": "Replica Key Policy Something New"},
            {**next(iter(self.fixtures().values())), "source": "aws.kms"},
            {**next(iter(self.fixtures().values())), "source": "kms-replica-guard-forged"},
        ]
        for where, (pattern, props) in detector.items():
            with self.subTest(rule=where):
                hub = json.dumps(with_account(pattern, probes[0]["account"]))
                results = [self.events.test_event_pattern(EventPattern=hub, Event=json.dumps(e))["Result"] for e in probes]
                self.assertEqual(results, [True, False, False])
                (target,) = props["Targets"]
                self.assertEqual(set(target), {"Id", "Arn"}, "the event itself, unchanged")
                self.assertTrue(target["Arn"]["Fn::GetAtt"][0].startswith("DetectorFunction"), target)
                # The drift bus (SAM: DriftEventBus dedicated, the default; CDK: the stack's own bus).
                bus = props["EventBusName"]
                drift_bus = bus["Fn::If"][1] if "Fn::If" in bus else bus
                self.assertTrue(drift_bus["Ref"].startswith("DriftBus"), bus)

    def _drain(self, queue: str, expected: int, timeout: float = 20) -> list[dict[str, Any]]:
        """The SNS envelopes the queue receives: until `expected` arrived and two empty polls follow."""
        got: list[dict[str, Any]] = []
        empty, deadline = 0, time.monotonic() + timeout
        while time.monotonic() < deadline and (len(got) < expected or empty < 2):
            msgs = self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            empty = 0 if msgs else empty + 1
            for m in msgs:
                got.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        return got


if __name__ == "__main__":
    unittest.main(verbosity=2)
