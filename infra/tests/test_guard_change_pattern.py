"""The hub's guard change rule (CloudTrail records of changes to the guard's own resources), tested
with EventBridge TestEventPattern on the emulator against infra/tests/fixtures/guard-changes/.

The rule is read from the translated SAM hub (infra/.build/sam/template.cfn.json, where SAM's
generated schedule rule, KMS rule and queue mapping exist) and the synthesized CDK hub. Its
references are resolved to the physical names the fixtures use: the function, the queue mapping's
UUID, the rules (by what they are: the schedule, the KMS rule, the exposure rule), the role, and
the stack name `kms-replica-guard`; and the detector's function, rules and role, which the rule names
too when the stack has the detector (the SAM hub evaluated with SecurityHub=on and ConfigRule=account,
as the CDK app is synthesized for the checks). Every fixture needs an expectation: a new file fails
the test.

IAM is global: EventBridge delivers its CloudTrail events in us-east-1 only, so a hub elsewhere gets
the changes to its role's policies from the spoke stack in us-east-1 (spoke.yaml's
ForwardGuardRoleChanges, GuardRoleName = the hub's RemediatorRoleName). That rule is the hub rule's
IAM branch (checked here for SAM; the CDK spoke is built from the same function as the CDK hub's
branch, infra/cdk/test/spoke-stack.test.ts), matches exactly the fixtures the hub's IAM branch
matches, and, on the emulator, forwards them from us-east-1's default bus to another Region's
default bus, where the hub's whole guard change rule matches them as they arrive. (The emulator
stands in for CloudTrail: it accepts PutEvents with source aws.iam, which AWS refuses.) The spoke
forwards the remediator role's changes only (GuardRoleName): those of the detector's role reach a
hub in us-east-1 only; these checks use the SAM hub at its defaults, without the detector.

    .venv/bin/python -m unittest discover -s infra/tests -p 'test_guard_change_pattern.py' -v
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
import unittest
from pathlib import Path
from typing import Any

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_event_pattern as tep  # noqa: E402
import test_templates as tt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import cfn_yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "infra" / "tests" / "fixtures" / "guard-changes"
SAM_HUB = ROOT / "infra" / ".build" / "sam" / "template.cfn.json"
SAM_SPOKE = ROOT / "infra" / "sam" / "spoke.yaml"
STACK = "kms-replica-guard"
ACCOUNT = "111122223333"
FUNCTION = f"{STACK}-Function-TESTFN"
NAMES = {
    "function": FUNCTION,
    "function_arn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{FUNCTION}",
    "mapping": "a1b2c3d4-5678-90ab-cdef-11111EXAMPLE",
    "sweep_rule": f"{STACK}-FunctionSweep-TESTRULE",
    "kms_rule": f"{STACK}-FunctionKmsApiCall-TESTRULE",
    "exposure_rule": f"{STACK}-ExposureNotificationRule-TESTRULE",
    "refused_rule": f"{STACK}-WriteRefusedNotificationRule-TESTRULE",
    "exemption_rule": f"{STACK}-ExemptionNotificationRule-TESTRULE",
    "role": f"{STACK}-RemediatorRole-TESTROLE",
    "detector": f"{STACK}-DetectorFunction-TESTFN",
    "detector_arn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{STACK}-DetectorFunction-TESTFN",
    "detector_sweep_rule": f"{STACK}-DetectorSweepRule-TESTRULE",
    "detector_role": f"{STACK}-DetectorRole-TESTROLE",
}
# The detector's resources (the rule names them when the stack has the detector).
DETECTOR_FIXTURES = {
    "lambda-update-detector-configuration.json",
    "events-disable-detector-rule.json",
    "iam-put-role-policy-detector.json",
}

SHOULD_MATCH = {
    "lambda-update-function-configuration-dry-run.json",
    "lambda-put-function-concurrency-zero.json",
    "lambda-update-function-code.json",
    "lambda-disable-sweep-queue-mapping.json",
    "events-disable-sweep-rule.json",
    "events-remove-sweep-targets.json",
    "monitoring-delete-heartbeat-alarm.json",
    "monitoring-set-alarm-state-ok.json",
    "iam-put-role-policy-remediator.json",
    "iam-attach-role-policy-remediator.json",
} | DETECTOR_FIXTURES
SHOULD_NOT_MATCH = {
    "lambda-update-other-function.json",
    "events-disable-other-rule.json",
    "monitoring-delete-other-alarm.json",
    "iam-put-role-policy-other-role.json",
    "lambda-get-function-configuration.json",
}


def hub_templates() -> dict[str, dict[str, Any]]:
    if not SAM_HUB.exists():
        raise AssertionError(f"{SAM_HUB.relative_to(ROOT)} is missing: run infra/scripts/sam_to_cfn.py (make infra-test)")
    found = {str(SAM_HUB.relative_to(ROOT)): json.loads(SAM_HUB.read_text(encoding="utf-8"))}
    for p in sorted(tep.CDK_OUT.glob("*.template.json")):
        t = json.loads(p.read_text(encoding="utf-8"))
        if any(r["Type"] == "AWS::Lambda::Function" for r in t["Resources"].values()):
            found[str(p.relative_to(ROOT))] = t
    return found


def change_rule(template: dict[str, Any]) -> dict[str, Any]:
    rules = [r["Properties"] for r in template["Resources"].values()
             if r["Type"] == "AWS::Events::Rule" and "aws.lambda" in ((r["Properties"].get("EventPattern") or {}).get("source") or [])]
    if len(rules) != 1:
        raise AssertionError(f"expected one guard change rule, found {len(rules)}")
    return rules[0]


def resolve(template: dict[str, Any], value: Any, values: dict[str, str] = tt.CDK_SYNTH_VALUES) -> Any:
    """The value with the hub's references as the fixtures' physical names (an Fn::If of the SAM hub
    at these parameter values)."""
    resources = template["Resources"]

    def rule_name(name: str) -> str:
        props = resources[name].get("Properties") or {}
        if name.startswith("Detector") and "ScheduleExpression" in props:
            return NAMES["detector_sweep_rule"]
        if "ScheduleExpression" in props:
            return NAMES["sweep_rule"]
        source = (props.get("EventPattern") or {}).get("source") or []
        if "aws.kms" in source:
            return NAMES["kms_rule"]
        if "kms-replica-guard" in source:
            detail_types = (props.get("EventPattern") or {}).get("detail-type") or []
            if "Replica Key Policy Write Refused" in detail_types:
                return NAMES["refused_rule"]
            if "Replica Key Exemption Granted" in detail_types:
                return NAMES["exemption_rule"]
            return NAMES["exposure_rule"]
        raise AssertionError(f"the change rule names an unexpected rule {name}")

    def ref(name: str, attr: str | None = None) -> str:
        if name == "AWS::StackName":
            return STACK
        type_ = resources[name]["Type"]
        if type_ == "AWS::Lambda::Function" and name.startswith("Detector"):
            return NAMES["detector_arn"] if attr == "Arn" else NAMES["detector"]
        if type_ == "AWS::Lambda::Function":
            return NAMES["function_arn"] if attr == "Arn" else NAMES["function"]
        if type_ == "AWS::Lambda::EventSourceMapping":
            return NAMES["mapping"]
        if type_ == "AWS::Events::Rule":
            return rule_name(name)
        if type_ == "AWS::IAM::Role":
            return NAMES["detector_role"] if name.startswith("Detector") else NAMES["role"]
        raise AssertionError(f"the change rule refers to {type_} {name}")

    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return ref(value["Ref"])
        if set(value) == {"Fn::GetAtt"}:
            name, attr = value["Fn::GetAtt"] if isinstance(value["Fn::GetAtt"], list) else value["Fn::GetAtt"].split(".", 1)
            return ref(name, attr)
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: ref(m.group(1)), value["Fn::Sub"])
        if set(value) == {"Fn::Join"}:
            sep, parts = value["Fn::Join"]
            return sep.join(str(resolve(template, p, values)) for p in parts)
        if set(value) == {"Fn::If"}:
            cond, yes, no = value["Fn::If"]
            return resolve(template, yes if tt.SamEvaluator(template, **values).condition(cond) else no, values)
        return {k: resolve(template, v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(template, v, values) for v in value]
    return value


class GuardChangeRuleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        problem = tep._emulator_ready(("events",))
        if problem:
            raise AssertionError(f"the local AWS emulator is not reachable: {problem}. Start it with `make emulator`.")
        cls.events = tep._client("events")
        cls.templates = hub_templates()

    def fixtures(self) -> dict[str, str]:
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(FIXTURES.glob("*.json"))}

    def test_both_hubs_have_the_rule_with_the_same_pattern_and_message(self) -> None:
        self.assertEqual(len(self.templates), 2, sorted(self.templates))
        patterns = {json.dumps(resolve(t, change_rule(t)["EventPattern"]), sort_keys=True) for t in self.templates.values()}
        self.assertEqual(len(patterns), 1, "SAM and CDK have different guard change patterns")
        messages = {json.dumps(change_rule(t)["Targets"][0]["InputTransformer"], sort_keys=True) for t in self.templates.values()}
        self.assertEqual(len(messages), 1, "SAM and CDK send different messages")
        for t in self.templates.values():
            self.assertEqual(resolve(t, change_rule(t)["Name"]), f"{STACK}-guard-changes")

    def test_every_fixture_has_an_expectation(self) -> None:
        files = set(self.fixtures())
        self.assertFalse(files - SHOULD_MATCH - SHOULD_NOT_MATCH, "fixtures without an expectation")
        self.assertFalse((SHOULD_MATCH | SHOULD_NOT_MATCH) - files, "expected fixtures are missing")

    def test_the_rule_matches_changes_to_the_guards_own_resources_only(self) -> None:
        checked = 0
        for where, template in self.templates.items():
            pattern = json.dumps(resolve(template, change_rule(template)["EventPattern"]))
            for name, event in self.fixtures().items():
                expected = name in SHOULD_MATCH
                with self.subTest(fixture=name, rule=where):
                    result = self.events.test_event_pattern(EventPattern=pattern, Event=event)["Result"]
                    self.assertIs(result, expected, f"{name} {'should' if expected else 'should not'} match")
                    checked += 1
        self.assertEqual(checked, 2 * len(SHOULD_MATCH | SHOULD_NOT_MATCH))

    def test_without_the_detector_the_rule_names_none_of_its_resources(self) -> None:
        sam = self.templates[str(SAM_HUB.relative_to(ROOT))]
        pattern = json.dumps(resolve(sam, change_rule(sam)["EventPattern"], {}))
        self.assertNotIn("Detector", pattern)
        for name in sorted(DETECTOR_FIXTURES):
            with self.subTest(fixture=name):
                self.assertIs(self.events.test_event_pattern(EventPattern=pattern, Event=self.fixtures()[name])["Result"], False)

    def test_the_message_names_who_did_what_to_which_resource(self) -> None:
        transformer = change_rule(next(iter(self.templates.values())))["Targets"][0]["InputTransformer"]
        event = json.loads(self.fixtures()["lambda-update-function-configuration-dry-run.json"])
        text = tep.render_input_template(transformer, event)
        self.assertEqual(
            text,
            f"kms-replica-guard: its own configuration changed: UpdateFunctionConfiguration20150331v2 (lambda.amazonaws.com) on {FUNCTION} "
            f"by arn:aws:sts::{ACCOUNT}:assumed-role/Admin/mallory from 198.51.100.7 at 2026-12-07T08:14:58Z "
            f"(account {ACCOUNT}, us-east-1, CloudTrail event e7d6c5b4-a3f2-4e1d-8c9b-0a1b2c3d4e01). Runbook: docs/src/runbook/guard-configuration-changed.md",
        )



def spoke_role_rule() -> dict[str, Any]:
    """spoke.yaml's rule forwarding the hub role's IAM changes (GuardRoleName set, in us-east-1)."""
    spoke = cfn_yaml.load(SAM_SPOKE)
    rules = [r for r in spoke["Resources"].values()
             if r["Type"] == "AWS::Events::Rule" and "aws.iam" in ((r["Properties"].get("EventPattern") or {}).get("source") or [])]
    if len(rules) != 1:
        raise AssertionError(f"expected one IAM forwarding rule in {SAM_SPOKE.name}, found {len(rules)}")
    return rules[0]


def with_role(value: Any, role: str) -> Any:
    """The spoke pattern with its GuardRoleName parameter as `role`."""
    if value == {"Ref": "GuardRoleName"}:
        return role
    if isinstance(value, dict):
        return {k: with_role(v, role) for k, v in value.items()}
    if isinstance(value, list):
        return [with_role(v, role) for v in value]
    return value


class GuardRoleForwardingTest(unittest.TestCase):
    """The us-east-1 spoke's forwarding of the hub role's IAM changes to a hub in another Region."""

    @classmethod
    def setUpClass(cls) -> None:
        problem = tep._emulator_ready(("events", "sqs"))
        if problem:
            raise AssertionError(f"the local AWS emulator is not reachable: {problem}. Start it with `make emulator`.")
        cls.events = tep._client("events")
        cls.hub = json.loads(SAM_HUB.read_text(encoding="utf-8"))
        cls.rule = spoke_role_rule()

    def fixtures(self) -> dict[str, str]:
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(FIXTURES.glob("*.json"))}

    def test_the_spoke_rule_is_the_hub_rules_iam_branch_only_in_us_east_1(self) -> None:
        spoke = cfn_yaml.load(SAM_SPOKE)
        self.assertEqual(self.rule["Condition"], "ForwardGuardRoleChanges")
        self.assertEqual(spoke["Conditions"]["ForwardGuardRoleChanges"], {"Fn::Not": [{"Fn::Equals": [{"Ref": "GuardRoleName"}, ""]}]})
        self.assertEqual(spoke["Parameters"]["GuardRoleName"]["Default"], "", "no IAM forwarding unless asked")
        rule = spoke["Rules"]["GuardRoleChangesOnlyInUsEast1"]
        self.assertEqual(rule["Assertions"][0]["Assert"], {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]})
        hub = resolve(self.hub, change_rule(self.hub)["EventPattern"], {})
        (branch,) = [b for b in hub["detail"]["$or"] if b["eventSource"] == ["iam.amazonaws.com"]]
        pattern = with_role(self.rule["Properties"]["EventPattern"], NAMES["role"])
        self.assertEqual(pattern, {"source": ["aws.iam"], "detail-type": hub["detail-type"], "detail": branch})
        # To the hub Region's default bus, with the spoke's forwarding role (as the KMS rule).
        (target,) = self.rule["Properties"]["Targets"]
        self.assertEqual(target["Arn"], {"Fn::Sub": "arn:${AWS::Partition}:events:${HubRegion}:${AWS::AccountId}:event-bus/default"})
        self.assertEqual(target["RoleArn"], {"Fn::GetAtt": ["ForwardRole", "Arn"]})

    def test_the_spoke_forwards_exactly_the_role_changes_the_hub_rule_reports(self) -> None:
        pattern = json.dumps(with_role(self.rule["Properties"]["EventPattern"], NAMES["role"]))
        hub = json.dumps(resolve(self.hub, change_rule(self.hub)["EventPattern"], {}))
        forwarded = set()
        for name, event in self.fixtures().items():
            with self.subTest(fixture=name):
                spoke_says = self.events.test_event_pattern(EventPattern=pattern, Event=event)["Result"]
                if spoke_says:
                    forwarded.add(name)
                    self.assertIs(self.events.test_event_pattern(EventPattern=hub, Event=event)["Result"], True)
        self.assertEqual(forwarded, {n for n in SHOULD_MATCH - DETECTOR_FIXTURES if n.startswith("iam-")})
        self.assertGreaterEqual(len(forwarded), 2)

    def test_a_forwarded_event_reaches_the_hub_rule_in_another_region(self) -> None:
        """Spoke rule on us-east-1's default bus -> us-west-2's default bus (cross-Region target), where
        the hub's guard change rule sends what it matches to a queue: the IAM fixtures arrive there with
        their source, detail-type and detail unchanged; nothing else does."""
        run = f"krg-iamfwd-{secrets.token_hex(3)}"
        role = f"{run}-RemediatorRole"  # unique: the emulator's default buses are shared
        hub_region = "us-west-2"
        east = tep._client("events")
        west = boto3.client("events", endpoint_url=tep.ENDPOINT, region_name=hub_region, aws_access_key_id="test", aws_secret_access_key="test")
        sqs = boto3.client("sqs", endpoint_url=tep.ENDPOINT, region_name=hub_region, aws_access_key_id="test", aws_secret_access_key="test")
        queue = sqs.create_queue(QueueName=run)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        hub_pattern = json.loads(json.dumps(resolve(self.hub, change_rule(self.hub)["EventPattern"], {})).replace(NAMES["role"], role))
        spoke_pattern = with_role(self.rule["Properties"]["EventPattern"], role)
        account = tep._client("sts").get_caller_identity()["Account"]
        try:
            west.put_rule(Name=run, EventPattern=json.dumps(hub_pattern))
            west.put_targets(Rule=run, Targets=[{"Id": "hub", "Arn": queue_arn}])
            east.put_rule(Name=run, EventPattern=json.dumps(spoke_pattern))
            east.put_targets(Rule=run, Targets=[{
                "Id": "HubEventBus", "Arn": f"arn:aws:events:{hub_region}:{account}:event-bus/default",
                "RoleArn": f"arn:aws:iam::{account}:role/{run}-forward",
            }])
            sent = {}
            for name, text in self.fixtures().items():
                event = json.loads(text.replace(NAMES["role"], role))
                east.put_events(Entries=[{"Source": event["source"], "DetailType": event["detail-type"], "Detail": json.dumps(event["detail"])}])
                sent[event["detail"]["eventID"]] = (name, event)
            got = self._drain(sqs, queue, expected=2)
        finally:
            for client in (east, west):
                try:
                    ids = [t["Id"] for t in client.list_targets_by_rule(Rule=run).get("Targets", [])]
                    if ids:
                        client.remove_targets(Rule=run, Ids=ids)
                    client.delete_rule(Name=run)
                except Exception:  # noqa: BLE001, S110 - best effort clean-up
                    pass
            sqs.delete_queue(QueueUrl=queue)
        arrived = {}
        for e in got:
            name, original = sent[e["detail"]["eventID"]]
            arrived[name] = e
            self.assertEqual((e["source"], e["detail-type"], e["detail"]), (original["source"], original["detail-type"], original["detail"]))
            self.assertEqual(e["region"], "us-east-1", "the event keeps the Region it happened in")
        self.assertEqual(set(arrived), {n for n in SHOULD_MATCH - DETECTOR_FIXTURES if n.startswith("iam-")})

    @staticmethod
    def _drain(sqs: Any, queue: str, expected: int, timeout: float = 20) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        empty, deadline = 0, time.monotonic() + timeout
        while time.monotonic() < deadline and (len(got) < expected or empty < 2):
            msgs = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            empty = 0 if msgs else empty + 1
            for m in msgs:
                got.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        return got


if __name__ == "__main__":
    unittest.main(verbosity=2)
