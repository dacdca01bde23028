"""Template hygiene and each hub stack's own properties, read from the templates themselves.

- every checkov skip names a check and says why; cfn-lint suppressions are limited to the one
  justified in infra/cdk/lib/constructs/remediator.ts and detector.ts (W3005 on the CDK functions);
- what infra/contract.json holds is checked against it in each stack on its own, not SAM against
  CDK: the alarms, the dashboard and the notification rules, the function roles' own statements,
  the backups bucket and its policy, the alarm topic's and its key's policies, the functions' runtime,
  variables, logging, log groups and asynchronous settings, the defaults, the resources by type
  (test_contract.py for SAM; the CDK app builds them from the contract, infra/cdk/test/contract.test.ts
  checks it), the outputs (test_contract.py, both tools), the IAM actions (test_permissions.py).
  The member and guardrails stacks have one definition each (infra/sam/member.yaml,
  infra/guardrails/guardrails.yaml), which the CDK app includes as it is;
- here, in the SAM hub template (as translated to CloudFormation by infra/scripts/sam_to_cfn.py) and
  in the synthesized CDK hub, each on its own: the environment at the defaults, each role's Deny
  outside its function, each alarm's runbook page, the drift bus, the detector's wiring;
- the SAM hub's baseline catalogue settings, evaluated for given parameter values (the ARNs and
  the s3:prefix it computes from BaselineSsmPath / BaselineS3Prefix), give what the CDK stack
  gives for the same context (infra/cdk/test/remediator.test.ts).

Needs infra/.build/sam (sam_to_cfn.py) and infra/cdk/cdk.out (`make synth`); `make infra-test`
produces both before it runs this.
"""

from __future__ import annotations

import json
import re
import sys
import unittest
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "scripts"))
import cfn_yaml  # noqa: E402

SAM_DIR = ROOT / "infra" / "sam"
SAM_TRANSLATED = ROOT / "infra" / ".build" / "sam" / "template.cfn.json"
CDK_OUT = ROOT / "infra" / "cdk" / "cdk.out"
ALLOWED_CFN_LINT_IGNORES = {"W3005"}
# The SAM parameter values that match the context the CDK app is synthesized with for the checks
# (CDK_SYNTH_CONTEXT in infra/infra.mk: securityHub=on, configRule=account): the detector and its
# rules, Config rule and alarms exist in both.
CDK_SYNTH_VALUES = {"SecurityHub": "on", "ConfigRule": "account"}
CONTRACT = json.loads((ROOT / "infra" / "contract.json").read_text(encoding="utf-8"))


def _load_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise AssertionError(f"{path.relative_to(ROOT)} is missing: run `make infra-test` (or `make synth`)")
    return json.loads(path.read_text(encoding="utf-8"))


def all_templates() -> dict[str, dict[str, Any]]:
    found = {str(p.relative_to(ROOT)): cfn_yaml.load(p) for p in sorted(SAM_DIR.glob("*.yaml"))}
    cdk = sorted(CDK_OUT.glob("*.template.json"))
    if not cdk:
        raise AssertionError(f"no synthesized CDK templates in {CDK_OUT}: run `make synth` first")
    found.update({str(p.relative_to(ROOT)): _load_json(p) for p in cdk})
    return found


def cdk_hub() -> dict[str, Any]:
    hubs = [t for t in map(_load_json, CDK_OUT.glob("*.template.json")) if _of_type(t, "AWS::Lambda::Function")]
    if len(hubs) != 1:
        raise AssertionError(f"expected one CDK template with the function in {CDK_OUT}, found {len(hubs)}")
    return hubs[0]


def _of_type(template: dict[str, Any], type_: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def _guard(template: dict[str, Any], type_: str, detector: bool = False) -> tuple[str, dict[str, Any]]:
    """(logical id, resource) of the remediator's (or the detector's) function or role: the
    detector's logical ids start with Detector in both tools (SAM DetectorFunction, CDK
    DetectorFunctionXXXXXXXX)."""
    found = [(k, v) for k, v in _of_type(template, type_).items() if k.startswith("Detector") == detector]
    if len(found) != 1:
        raise AssertionError(f"expected one {'detector' if detector else 'remediator'} {type_}, found {len(found)}")
    return found[0]


def remediator_fn(template: dict[str, Any]) -> dict[str, Any]:
    return _guard(template, "AWS::Lambda::Function")[1]


def detector_fn(template: dict[str, Any]) -> dict[str, Any]:
    return _guard(template, "AWS::Lambda::Function", detector=True)[1]


def remediator_role(template: dict[str, Any]) -> dict[str, Any]:
    return _guard(template, "AWS::IAM::Role")[1]


def detector_role(template: dict[str, Any]) -> dict[str, Any]:
    return _guard(template, "AWS::IAM::Role", detector=True)[1]


def attached_to(template: dict[str, Any], role_id: str, evaluate: Any = None) -> list[dict[str, Any]]:
    """The AWS::IAM::Policy resources attached to a role (an Fn::If in Roles evaluated by
    `evaluate`, else both of its branches), with their own Condition left to the caller."""
    found = []
    for r in _of_type(template, "AWS::IAM::Policy").values():
        names = set()
        for x in r["Properties"].get("Roles", []):
            if isinstance(x, dict) and "Fn::If" in x:
                cond, yes, no = x["Fn::If"]
                branches = [yes if evaluate.condition(cond) else no] if evaluate else [yes, no]
                names.update(b.get("Ref") for b in branches if isinstance(b, dict))
            elif isinstance(x, dict):
                names.add(x.get("Ref"))
        if role_id in names:
            found.append(r)
    return found


def _alarm_key(template: dict[str, Any], alarm: dict[str, Any]) -> str:
    """The alarm name without the stack name (`${AWS::StackName}-X` in SAM, `NAME-X` in CDK)."""
    name = alarm["Properties"]["AlarmName"]
    name = name.get("Fn::Sub", name) if isinstance(name, dict) else name
    return re.sub(r"^(\$\{AWS::StackName\}|kms-replica-guard)-", "", name)


def cdk_hub_environment() -> tuple[str, str]:
    """(account, Region) the CDK hub stack was synthesized for, from cdk.out/manifest.json."""
    manifest = _load_json(CDK_OUT / "manifest.json")
    hub = _one_value(
        [a["environment"] for a in manifest["artifacts"].values()
         if a.get("type") == "aws:cloudformation:stack" and a.get("displayName", "").startswith("Hub")],
        "CDK hub stack in manifest.json",
    )
    account, region = hub.removeprefix("aws://").split("/")
    return account, region


def cdk_hub_stack_name() -> str:
    """The stack name the CDK hub was synthesized with (its literals carry it), from manifest.json."""
    manifest = _load_json(CDK_OUT / "manifest.json")
    return _one_value(
        [a.get("properties", {}).get("stackName") for a in manifest["artifacts"].values()
         if a.get("type") == "aws:cloudformation:stack" and a.get("displayName", "").startswith("Hub")],
        "CDK hub stack name in manifest.json",
    )


def _one_value(values: list[Any], what: str) -> Any:
    if len(values) != 1:
        raise AssertionError(f"expected one {what}, found {len(values)}")
    return values[0]


class Normalizer:
    """Renders a template value in a form both tools agree on.

    Parameter Refs become the parameter's default, pseudo parameters the CDK hub's account,
    Region and stack name, Refs and GetAtts of resources `<TYPE>` / `<TYPE.Attr>` (logical ids differ between the
    tools), Fn::Sub and Fn::Join their joined text, every scalar a string, Action a sorted list.
    """

    def __init__(self, template: dict[str, Any], account: str, region: str, stack_name: str = "kms-replica-guard", **values: str) -> None:
        self.template = template
        self.resources = template["Resources"]
        self.params = template.get("Parameters", {})
        self.conditions = template.get("Conditions", {})
        self.values = values
        self.pseudo = {
            "AWS::Partition": "aws",
            "AWS::AccountId": account,
            "AWS::Region": region,
            "AWS::StackName": stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }

    def _ref(self, name: str, attr: str | None = None) -> str:
        if attr is None and name in self.pseudo:
            return self.pseudo[name]
        if attr is None and name in self.params:
            return str(self.values.get(name, self.params[name].get("Default")))
        if name in self.resources:
            type_ = self.resources[name]["Type"]
            return f"<{type_}.{attr}>" if attr else f"<{type_}>"
        raise AssertionError(f"unresolvable reference {name}{'.' + attr if attr else ''}")

    def _sub(self, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            name, _, attr = m.group(1).partition(".")
            return self._ref(name, attr or None)

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Ref"}:
                return self._ref(value["Ref"])
            if set(value) == {"Fn::GetAtt"}:
                name, attr = value["Fn::GetAtt"]
                return self._ref(name, attr)
            if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
                return self._sub(value["Fn::Sub"])
            if set(value) == {"Fn::Join"}:
                sep, parts = value["Fn::Join"]
                return sep.join(self(p) for p in parts)
            if set(value) == {"Fn::If"} and self.conditions:
                # A branch chosen at the parameter values (defaults), as CloudFormation would.
                name, yes, no = value["Fn::If"]
                return self(yes if SamEvaluator(self.template, **self.values).condition(name) else no)
            if len(value) == 1 and next(iter(value)).startswith("Fn::"):
                raise AssertionError(f"cannot normalize {value}")
            out = {k: self(v) for k, v in value.items()}
            if "Action" in out:
                out["Action"] = sorted(out["Action"] if isinstance(out["Action"], list) else [out["Action"]])
            return out
        if isinstance(value, list):
            return [self(v) for v in value]
        return str(value)


def _resolve(value: Any, params: dict[str, Any], mappings: dict[str, Any] | None = None) -> Any:
    """Replaces a {"Ref": Parameter} with the parameter's default, and a Fn::FindInMap (keys
    literal or parameter Refs) with the mapped value at the defaults."""
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in params:
        return params[value["Ref"]].get("Default")
    if isinstance(value, dict) and set(value) == {"Fn::FindInMap"} and mappings is not None:
        name, key1, key2 = (str(_resolve(v, params)) for v in value["Fn::FindInMap"])
        return mappings[name][key1][key2]
    return value


def _metric_math(metrics: list[dict[str, Any]], params: dict[str, Any], norm: Any = None) -> dict[str, Any]:
    """An alarm's Metrics: its one returned expression (its Id is a name only: CDK numbers it) and
    each series by Id as [namespace, metric, dimensions, period, stat, returned]; with a Normalizer,
    dimension values and the expression are normalized (a resource's Ref, a parameter in Fn::Sub)."""
    norm = norm or (lambda v: v)
    expressions = [m for m in metrics if "Expression" in m]
    if len(expressions) != 1:
        raise AssertionError(f"expected one expression in the alarm's Metrics, found {len(expressions)}")
    series = {}
    for m in metrics:
        if "MetricStat" not in m:
            continue
        stat, metric = m["MetricStat"], m["MetricStat"]["Metric"]
        series[m["Id"]] = [
            _resolve(metric["Namespace"], params),
            metric["MetricName"],
            {d["Name"]: norm(d["Value"]) for d in metric.get("Dimensions", [])},
            int(stat["Period"]),
            stat["Stat"],
            bool(m.get("ReturnData", True)),
        ]
    e = expressions[0]
    return {"expression": {k: norm(e.get(k)) for k in ("Expression", "Label", "ReturnData")}, "series": series}


class TemplateHygieneTest(unittest.TestCase):
    def test_every_checkov_skip_names_a_check_and_says_why(self) -> None:
        for where, template in all_templates().items():
            for name, resource in template.get("Resources", {}).items():
                for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", []):
                    with self.subTest(template=where, resource=name, check=skip.get("id")):
                        self.assertRegex(skip.get("id", ""), r"^CKV2?_AWS_\d+$")
                        self.assertGreaterEqual(len(skip.get("comment", "")), 40, "give the reason for the skip")

    def test_cfn_lint_suppressions_are_only_the_justified_ones(self) -> None:
        for where, template in all_templates().items():
            ignored = set(((template.get("Metadata") or {}).get("cfn-lint") or {}).get("config", {}).get("ignore_checks", []))
            self.assertFalse(ignored, f"{where}: template-wide cfn-lint suppressions {ignored}")
            for name, resource in template.get("Resources", {}).items():
                config = ((resource.get("Metadata") or {}).get("cfn-lint") or {}).get("config", {})
                extra = set(config.get("ignore_checks", [])) - ALLOWED_CFN_LINT_IGNORES
                self.assertFalse(extra, f"{where}:{name} suppresses {extra} without a justification here")


class EachHubStackTest(unittest.TestCase):
    sam: dict[str, Any]
    cdk: dict[str, Any]

    @classmethod
    def setUpClass(cls) -> None:
        cls.sam = _load_json(SAM_TRANSLATED)
        cls.cdk = cdk_hub()
        cls.params = cls.sam.get("Parameters", {})
        account, region = cdk_hub_environment()
        stack_name = cdk_hub_stack_name()
        cls.norm_sam = Normalizer(cls.sam, account, region, stack_name, **CDK_SYNTH_VALUES)
        cls.norm_cdk = Normalizer(cls.cdk, account, region, stack_name)

    def test_the_environment_at_the_defaults_is_the_functions_defaults(self) -> None:
        # Each variable whose setting declares a default (src/config/vars.rs, carried by the
        # contract) has that default in the SAM stack at its parameters' defaults; but for what the
        # stack decides itself: BASELINE_TAG is passed with a catalogue only, EVENT_BUS is the
        # stack's own bus, RATE_INSTANCES the sweep's workers (their own tests). The CDK app's: its
        # jest test (contract.test.ts), the CDK template here having the synth context's settings.
        stack_decides = {"BASELINE_TAG": "", "EVENT_BUS": "<DriftBus>", "RATE_INSTANCES": "2"}
        defaults = {s["variable"]: s["default"] for s in CONTRACT["settings"] if s["default"] is not None}
        env = SamEvaluator(self.sam).environment()
        checked = {k: v for k, v in env.items() if k in defaults}
        self.assertEqual(checked, {k: stack_decides.get(k, defaults[k]) for k in checked})
        self.assertGreaterEqual(len(set(checked) - set(stack_decides)), 12)
        self.assertEqual(SamEvaluator(self.sam).environment("BACKUP_BUCKET"), {"BACKUP_BUCKET": "<BackupBucket>"})

    def test_every_alarm_links_to_its_own_runbook_page(self) -> None:
        # One runbook page per alarm, named after it: `<stack>-X` -> docs/src/runbook/<x in lower case>.md.
        for tool, template in (("SAM", self.sam), ("CDK", self.cdk)):
            for alarm in _of_type(template, "AWS::CloudWatch::Alarm").values():
                key = _alarm_key(template, alarm)
                with self.subTest(tool=tool, alarm=key):
                    description = alarm["Properties"]["AlarmDescription"]
                    m = re.search(r"Runbook: (docs/src/runbook/([a-z0-9-]+)\.md)$", description)
                    self.assertIsNotNone(m, f"{tool} {key}: AlarmDescription does not end with its runbook page: {description!r}")
                    assert m is not None
                    self.assertEqual(m.group(2), key.lower(), f"{tool} {key}: the runbook page is named after the alarm")
                    self.assertTrue((ROOT / m.group(1)).is_file(), f"{tool} {key}: {m.group(1)} does not exist")

    def test_the_async_event_age_alarm_is_half_of_the_maximum_event_age(self) -> None:
        # AsyncEventAge is in milliseconds; MaximumEventAgeInSeconds in seconds (3600 at the defaults).
        for name, template, norm in (("SAM", self.sam, self.norm_sam), ("CDK", self.cdk, self.norm_cdk)):
            with self.subTest(tool=name):
                (alarm,) = [a for a in _of_type(template, "AWS::CloudWatch::Alarm").values() if _alarm_key(template, a) == "AsyncEventAge"]
                p = alarm["Properties"]
                math = _metric_math(p["Metrics"], self.params, norm)
                # The remediator's and the detector's: the same settings.
                (max_age,) = {norm(c["Properties"]["MaximumEventAgeInSeconds"]) for c in _of_type(template, "AWS::Lambda::EventInvokeConfig").values()}
                self.assertEqual(math["expression"]["Expression"], f"age / (1000 * {max_age})")
                self.assertEqual(math["series"], {"age": ["AWS/Lambda", "AsyncEventAge", {"FunctionName": "<AWS::Lambda::Function>"}, 300, "Maximum", False]})
                self.assertEqual((float(p["Threshold"]), p["ComparisonOperator"]), (0.5, "GreaterThanOrEqualToThreshold"))

    def test_the_exposure_alarm_sums_the_public_and_cross_account_series(self) -> None:
        for name, template in (("SAM", self.sam), ("CDK", self.cdk)):
            with self.subTest(tool=name):
                alarm = _one_value(
                    [a for a in _of_type(template, "AWS::CloudWatch::Alarm").values() if _alarm_key(template, a) == "ExposureDrift"],
                    "ExposureDrift alarm",
                )
                p = alarm["Properties"]
                self.assertNotIn("MetricName", p, "ExposureDrift has no dimensionless total: metric math over its Severity series")
                math = _metric_math(p["Metrics"], self.params)
                self.assertEqual(
                    math["series"],
                    {
                        "public": ["KmsReplicaGuard", "ExposureDrift", {"Severity": "public"}, 300, "Sum", False],
                        "cross_account": ["KmsReplicaGuard", "ExposureDrift", {"Severity": "cross-account"}, 300, "Sum", False],
                    },
                )
                self.assertEqual(math["expression"]["Expression"], "public + cross_account")
                self.assertEqual((float(p["Threshold"]), p["ComparisonOperator"], p["TreatMissingData"]), (1.0, "GreaterThanOrEqualToThreshold", "notBreaching"))
                self.assertRegex(p["AlarmDescription"], r"dry-run.*Runbook: docs/src/runbook/exposuredrift\.md$")

    def test_drift_events_go_to_the_stacks_own_bus_and_nowhere_else(self) -> None:
        # At the defaults (DriftEventBus / driftEventBus dedicated): one custom bus, <stack>-drift, without
        # a bus policy; the function publishes there, may put events there only, and the guard's
        # notification rules read it there. The guard change rule stays on the default bus (CloudTrail).
        for tool, template, norm in (("SAM", self.sam, self.norm_sam), ("CDK", self.cdk, self.norm_cdk)):
            with self.subTest(tool=tool):
                (bus,) = _of_type(template, "AWS::Events::EventBus").values()
                self.assertEqual(norm(bus["Properties"]), {"Name": "kms-replica-guard-drift"})
                # No bus policy on it (the only one, the organisation's, is the default bus's).
                self.assertEqual({norm(p["Properties"]["EventBusName"]) for p in _of_type(template, "AWS::Events::EventBusPolicy").values()} - {"default"}, set())
                env = remediator_fn(template)["Properties"]["Environment"]["Variables"]
                self.assertEqual(norm(env["EVENT_BUS"]), "<AWS::Events::EventBus>")
                role = remediator_role(template)["Properties"]
                (publish,) = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"] if s["Sid"] == "PublishDriftEvents"]
                self.assertEqual(norm(publish["Resource"]), "<AWS::Events::EventBus.Arn>")
                buses = {}
                for r in _of_type(template, "AWS::Events::Rule").values():
                    p = r["Properties"]
                    if "EventPattern" in p and "ScheduleExpression" not in p:
                        sources = tuple(p["EventPattern"].get("source") or [])
                        buses.setdefault(norm(p.get("EventBusName", "default")), set()).update(sources)
                self.assertEqual(buses.get("<AWS::Events::EventBus>"), {"kms-replica-guard"})
                self.assertNotIn("kms-replica-guard", buses.get("default", set()))
                self.assertIn("aws.iam", buses.get("default", set()), "the guard change rule reads CloudTrail on the default bus")
        # SAM: DriftEventBus default puts everything back on the default bus, without the custom one.
        env = SamEvaluator(self.sam, DriftEventBus="default").environment()
        self.assertEqual(env["EVENT_BUS"], "default")
        self.assertEqual(self.params["DriftEventBus"]["AllowedValues"], ["dedicated", "default"])
        self.assertEqual(self.params["DriftEventBus"]["Default"], "dedicated")
        self.assertFalse(SamEvaluator(self.sam, DriftEventBus="default").condition(self.sam["Resources"]["DriftBus"]["Condition"]))
        role = remediator_role(self.sam)["Properties"]
        (publish,) = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"] if s["Sid"] == "PublishDriftEvents"]
        self.assertEqual(
            SamEvaluator(self.sam, DriftEventBus="default")(publish["Resource"]),
            "arn:aws:events:us-east-1:111122223333:event-bus/default",
        )

    def test_the_function_starts_after_every_conditional_grant(self) -> None:
        # SAM: the separately attached policies are conditional; DependsOn on one whose condition is
        # false fails the stack, so each function's Metadata refers to each policy attached to its
        # role, under that policy's own condition.
        everything = SamEvaluator(self.sam, SecurityHub="on", ConfigRule="account", MemberRoleName="m")
        for detector in (False, True):
            fn_id, fn = _guard(self.sam, "AWS::Lambda::Function", detector)
            role_id = _guard(self.sam, "AWS::IAM::Role", detector)[0]
            with self.subTest(function=fn_id):
                refs = {}
                for item in fn["Metadata"]["GrantsAttachedFirst"]:
                    cond, yes, no = item["Fn::If"]
                    self.assertEqual(no, {"Ref": "AWS::NoValue"})
                    refs[yes["Ref"]] = cond
                policies = {
                    name: r["Condition"] for name, r in _of_type(self.sam, "AWS::IAM::Policy").items()
                    if "Condition" in r and r in attached_to(self.sam, role_id, everything) and "Deny" not in str(r["Properties"]["PolicyDocument"])
                }
                self.assertTrue(policies)
                self.assertEqual(refs, policies, "every separately attached policy, under its own condition")
                self.assertNotIn("DependsOn", fn, "DependsOn on a conditional resource is an error when its condition is false")
        # The only other policies deny (each names its function, so it follows it).
        deny = [r for r in _of_type(self.sam, "AWS::IAM::Policy").values() if "Deny" in str(r["Properties"]["PolicyDocument"])]
        self.assertEqual(len(deny), 2)
        for r in deny:
            self.assertEqual({s["Effect"] for s in r["Properties"]["PolicyDocument"]["Statement"]}, {"Deny"})
        # CDK: every grant is inline in its role (its only AWS::IAM::Policy resources are those Denies),
        # and each function depends on its role.
        self.assertEqual(
            [{s["Effect"] for s in r["Properties"]["PolicyDocument"]["Statement"]} for r in _of_type(self.cdk, "AWS::IAM::Policy").values()],
            [{"Deny"}, {"Deny"}],
        )
        for detector in (False, True):
            _, cdk_fn = _guard(self.cdk, "AWS::Lambda::Function", detector)
            role_id = _guard(self.cdk, "AWS::IAM::Role", detector)[0]
            self.assertIn(role_id, cdk_fn.get("DependsOn", []))

    def test_the_role_works_only_from_the_function(self) -> None:
        def deny(template: dict[str, Any], norm: Normalizer, detector: bool) -> dict[str, Any]:
            role_id = _guard(template, "AWS::IAM::Role", detector)[0]
            (policy,) = [r for r in attached_to(template, role_id) if "Deny" in str(r["Properties"]["PolicyDocument"])]
            (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
            self.assertEqual(policy["Properties"]["Roles"], [{"Ref": role_id}])
            return norm(statement)

        for detector in (False, True):
            caller = "detector" if detector else "remediator"
            # Every action of the calls the code makes as this function (the contract's operations),
            # except what the Lambda service itself does with the role outside the execution
            # environment, without the key: the SQS event source mapping and the on-failure
            # destination (sqs:*), and the logs.
            expected = sorted({o["iam_action"] for o in CONTRACT["operations"]
                               if caller in o["callers"] and o["iam_action"] and not o["iam_action"].startswith(("sqs:", "logs:"))})
            for tool, template, norm in (("SAM", self.sam, self.norm_sam), ("CDK", self.cdk, self.norm_cdk)):
                with self.subTest(role=caller, tool=tool):
                    statement = deny(template, norm, detector)
                    self.assertEqual(statement["Effect"], "Deny")
                    self.assertEqual(statement["Resource"], "*")
                    self.assertEqual(statement["Action"], expected)
                    # ArnNotEquals also matches a request without the key (credentials used outside Lambda).
                    self.assertEqual(statement["Condition"], {"ArnNotEquals": {"lambda:SourceFunctionArn": "<AWS::Lambda::Function.Arn>"}})
                    # Of this function (the remediator's logical ids do not start with Detector).
                    role_id = _guard(template, "AWS::IAM::Role", detector)[0]
                    raw = next(r for r in attached_to(template, role_id) if "Deny" in str(r["Properties"]["PolicyDocument"]))
                    fn_ref = raw["Properties"]["PolicyDocument"]["Statement"][0]["Condition"]["ArnNotEquals"]["lambda:SourceFunctionArn"]["Fn::GetAtt"][0]
                    self.assertEqual(fn_ref, _guard(template, "AWS::Lambda::Function", detector)[0])

    def test_code_signing_is_optional(self) -> None:
        arn = "arn:aws:lambda:us-east-1:111122223333:code-signing-config:csc-0123456789abcdef0"
        for detector in (False, True):
            fn = _guard(self.sam, "AWS::Lambda::Function", detector)[1]["Properties"]
            self.assertIs(SamEvaluator(self.sam)(fn["CodeSigningConfigArn"]), SamEvaluator.NO_VALUE)
            self.assertEqual(SamEvaluator(self.sam, CodeSigningConfigArn=arn)(fn["CodeSigningConfigArn"]), arn)
            self.assertNotIn("CodeSigningConfigArn", _guard(self.cdk, "AWS::Lambda::Function", detector)[1]["Properties"])
        pattern = re.compile(self.params["CodeSigningConfigArn"]["AllowedPattern"])
        self.assertRegex(arn, pattern)
        for bad in ("csc-0123456789abcdef0", arn + "x", arn.replace("lambda", "signer")):
            self.assertNotRegex(bad, pattern)


class SamEvaluator:
    """The SAM hub template (translated) evaluated for given parameter values, as CloudFormation
    would: conditions, Ref, Fn::If, Fn::Sub, Fn::Join, Fn::Select and Fn::Split. For the values
    the template computes from its parameters (the catalogue's ARNs and s3:prefix), which the
    CDK stack computes at synth time and the parity tests (at the defaults) never reach."""

    PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "111122223333", "AWS::StackName": "s"}

    def __init__(self, template: dict[str, Any], **values: str) -> None:
        self.template = template
        params = template["Parameters"]
        unknown = set(values) - set(params)
        if unknown:
            raise AssertionError(f"no such parameters: {unknown}")
        self.values = {**self.PSEUDO, **{k: str(p.get("Default", "")) for k, p in params.items()}, **values}

    NO_VALUE = object()

    def condition(self, name: str) -> bool:
        return bool(self(self.template["Conditions"][name]))

    def __call__(self, v: Any) -> Any:
        if isinstance(v, list):
            return [self(x) for x in v]
        if not isinstance(v, dict):
            return v
        if set(v) == {"Ref"}:
            if v["Ref"] == "AWS::NoValue":
                return self.NO_VALUE
            return self.values[v["Ref"]] if v["Ref"] in self.values else f"<{v['Ref']}>"
        if set(v) == {"Fn::GetAtt"}:
            return "<{}.{}>".format(*v["Fn::GetAtt"])
        if set(v) == {"Condition"} and isinstance(v["Condition"], str):
            return self.condition(v["Condition"])
        if len(v) == 1 and next(iter(v)).startswith("Fn::"):
            fn, arg = next(iter(v.items()))
            if fn == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else (arg[0], {k: self(x) for k, x in arg[1].items()})
                return re.sub(r"\$\{([^}!]+)\}", lambda m: names.get(m.group(1), self.values.get(m.group(1))), text)
            if fn == "Fn::Join":
                return arg[0].join(self(arg[1]))
            if fn == "Fn::Select":
                return self(arg[1])[int(arg[0])]
            if fn == "Fn::Split":
                return self(arg[1]).split(arg[0])
            if fn == "Fn::If":
                return self(arg[1]) if self.condition(arg[0]) else self(arg[2])
            if fn == "Fn::Equals":
                # CloudFormation compares the values as strings (a Number parameter equals 0 and '0').
                return str(self(arg[0])) == str(self(arg[1]))
            if fn == "Fn::Not":
                return not self(arg[0])
            if fn == "Fn::And":
                return all(self(x) for x in arg)
            if fn == "Fn::Or":
                return any(self(x) for x in arg)
            if fn == "Fn::Contains":
                return str(self(arg[1])) in [str(x) for x in self(arg[0])]
            raise AssertionError(f"cannot evaluate {fn}")
        return {k: self(x) for k, x in v.items()}

    def refused_by(self) -> list[str]:
        """The template's Rules whose assertions these values fail (CloudFormation refuses the stack)."""
        refused = []
        for name, rule in (self.template.get("Rules") or {}).items():
            if "RuleCondition" in rule and not self(rule["RuleCondition"]):
                continue
            if not all(self(a["Assert"]) for a in rule["Assertions"]):
                refused.append(name)
        return refused

    def environment(self, *names: str, detector: bool = False) -> dict[str, Any]:
        """The named variables (all by default) of the remediator (or the detector) as these values
        set them; an omitted one is absent."""
        env = _guard(self.template, "AWS::Lambda::Function", detector)[1]["Properties"]["Environment"]["Variables"]
        values = {n: self(env[n]) for n in (names or env) if n in env}
        return {n: v for n, v in values.items() if v is not self.NO_VALUE}

    def statements(self, detector: bool = False) -> dict[str, Any]:
        """The statements of the conditional policies that these values create and attach to the
        remediator's (or the detector's) role, by Sid."""
        out = {}
        role_id = _guard(self.template, "AWS::IAM::Role", detector)[0]
        for r in attached_to(self.template, role_id, self):
            # The OnlyThisFunctionPolicy of each role is no grant (a Deny, tested on its own).
            if not r.get("Condition") or not self.condition(r["Condition"]) or "Deny" in str(r["Properties"]["PolicyDocument"]):
                continue
            for s in self(r["Properties"]["PolicyDocument"]["Statement"]):
                out[s["Sid"]] = s
        return out


class SamBaselineCatalogueTest(unittest.TestCase):
    """The SAM hub's baseline catalogue settings resolve as the CDK stack's (infra/cdk/test)."""

    ENV = ("BASELINE_SOURCE", "BASELINE_TAG", "BASELINE_DEFAULT", "BASELINE_MATCH", "MIRROR_REWRITE")

    @classmethod
    def setUpClass(cls) -> None:
        cls.sam = _load_json(SAM_TRANSLATED)

    def at(self, **values: str) -> SamEvaluator:
        return SamEvaluator(self.sam, **values)

    def test_without_a_catalogue_the_tag_and_default_stay_unset(self) -> None:
        for values in ({}, {"BaselineSource": "file:/var/task/b.json"}, {"BaselineSource": '{"Statement": "dir:"}'},
                       {"BaselineSsmParameter": "/kms/baseline", "BaselineSource": "dir:/var/task/baselines"},
                       {"BaselineS3Object": "bucket/b.json", "BaselineDefault": "strict"}):
            with self.subTest(**values):
                env = self.at(**values).environment(*self.ENV)
                self.assertEqual((env["BASELINE_TAG"], env["BASELINE_DEFAULT"]), ("", ""))
                self.assertEqual((env["BASELINE_MATCH"], env["MIRROR_REWRITE"]), ("exact", "off"))

    def test_a_directory_catalogue(self) -> None:
        env = self.at(BaselineSource="dir:/var/task/baselines", BaselineDefault="primary", BaselineMatch="contains", MirrorRewrite="on").environment(*self.ENV)
        self.assertEqual(env, {
            "BASELINE_SOURCE": "dir:/var/task/baselines",
            "BASELINE_TAG": "kms-replica-guard:baseline",
            "BASELINE_DEFAULT": "primary",
            "BASELINE_MATCH": "contains",
            "MIRROR_REWRITE": "on",
        })
        self.assertEqual(set(self.at(BaselineSource="dir:/var/task/baselines").statements()), set())

    def test_an_ssm_catalogue_is_read_by_path(self) -> None:
        sam = self.at(BaselineSsmPath="/kms-replica-guard/baselines/", BaselineTag="team:baseline", BaselineDefault="strict")
        self.assertEqual(sam.environment(*self.ENV)["BASELINE_SOURCE"], "ssm:/kms-replica-guard/baselines/")
        self.assertEqual(sam.environment("BASELINE_TAG", "BASELINE_DEFAULT"), {"BASELINE_TAG": "team:baseline", "BASELINE_DEFAULT": "strict"})
        self.assertEqual(sam.statements(), {
            "ReadBaselineCatalogueParameters": {
                "Sid": "ReadBaselineCatalogueParameters",
                "Effect": "Allow",
                "Action": "ssm:GetParametersByPath",
                "Resource": "arn:aws:ssm:us-east-1:111122223333:parameter/kms-replica-guard/baselines",
            },
        })

    def test_an_s3_catalogue_is_listed_under_its_prefix_only(self) -> None:
        for prefix in ("a/", "kms-replica-guard/baselines/", "1/2/3/4/5/6/7/8/"):
            with self.subTest(prefix=prefix):
                sam = self.at(BaselineS3Prefix=f"baseline-bucket/{prefix}")
                self.assertEqual(sam.environment("BASELINE_SOURCE", "BASELINE_TAG"), {
                    "BASELINE_SOURCE": f"s3://baseline-bucket/{prefix}",
                    "BASELINE_TAG": "kms-replica-guard:baseline",
                })
                self.assertEqual(sam.statements(), {
                    "ListBaselineCatalogueObjects": {
                        "Sid": "ListBaselineCatalogueObjects",
                        "Effect": "Allow",
                        "Action": "s3:ListBucket",
                        "Resource": "arn:aws:s3:::baseline-bucket",
                        "Condition": {"StringLike": {"s3:prefix": f"{prefix}*"}},
                    },
                    "ReadBaselineCatalogueObjects": {
                        "Sid": "ReadBaselineCatalogueObjects",
                        "Effect": "Allow",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::baseline-bucket/{prefix}*",
                    },
                })

    def test_the_patterns_match_what_the_policies_can_express(self) -> None:
        params = self.sam["Parameters"]
        ssm, s3 = re.compile(params["BaselineSsmPath"]["AllowedPattern"]), re.compile(params["BaselineS3Prefix"]["AllowedPattern"])
        for ok in ("", "/kms/", "/a/b.c/d_e-f/"):
            self.assertRegex(ok, ssm)
        for bad in ("/kms", "kms/", "/", "/a//b/", "/a/*/"):
            self.assertNotRegex(bad, ssm)
        for ok in ("", "bucket/a/", "my.bucket/env=prod/kms/", "b-k/1/2/3/4/5/6/7/8/"):
            self.assertRegex(ok, s3)
        # No wildcard or policy variable in an ARN or s3:prefix; no more levels than the template joins.
        for bad in ("bucket/", "bucket/a", "bucket//a/", "bucket/a*/", "bucket/${aws:username}/", "s3://bucket/a/", "b/1/2/3/4/5/6/7/8/9/"):
            self.assertNotRegex(bad, s3)


class SamFindingsTest(unittest.TestCase):
    """SecurityHub and ConfigRule resolve as the CDK stack's securityHub and configRule (infra/cdk/test):
    the detector function serves both, the remediator neither."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.sam = _load_json(SAM_TRANSLATED)

    def resources(self, sam: SamEvaluator) -> dict[str, str]:
        return {n: r["Type"] for n, r in self.sam["Resources"].items() if "Condition" not in r or sam.condition(r["Condition"])}

    def test_off_by_default_there_is_no_detector(self) -> None:
        sam = SamEvaluator(self.sam)
        self.assertNotIn("SECURITY_HUB", sam.environment())
        self.assertNotIn("ImportFindings", sam.statements())
        self.assertNotIn("AnswerConfigRule", sam.statements())
        found = self.resources(sam)
        self.assertFalse(set(found.values()) & {"AWS::Config::ConfigRule", "AWS::Config::OrganizationConfigRule"})
        self.assertFalse({n for n in found if n.startswith("Detector")}, "no detector resource by default")
        self.assertFalse(set(found) & {"ConfigRuleInvokePermission", "OrganizationConfigRuleInvokePermission"})

    def test_the_detector_exists_for_either_setting_and_its_rules_with_security_hub_only(self) -> None:
        rules = {"DetectorNotificationRule", "DetectorNotificationInvokePermission", "DetectorSweepRule", "DetectorSweepInvokePermission"}
        for values, detector, with_rules in (({"SecurityHub": "on"}, True, True), ({"ConfigRule": "account"}, True, False),
                                             ({"ConfigRule": "organization"}, True, False), ({}, False, False)):
            with self.subTest(**values):
                found = self.resources(SamEvaluator(self.sam, **values))
                self.assertEqual({"DetectorFunction", "DetectorRole", "DetectorLogGroup"} <= set(found), detector)
                self.assertEqual(rules <= set(found), with_rules)
                if not with_rules:
                    self.assertFalse(rules & set(found))

    def test_security_hub_on_imports_into_this_accounts_default_product_from_the_detector(self) -> None:
        sam = SamEvaluator(self.sam, SecurityHub="on")
        self.assertEqual(sam.environment("SECURITY_HUB", detector=True), {"SECURITY_HUB": "on"})
        self.assertNotIn("SECURITY_HUB", sam.environment(), "the remediator reports no finding")
        self.assertEqual(sam.statements(detector=True)["ImportFindings"], {
            "Sid": "ImportFindings",
            "Effect": "Allow",
            "Action": "securityhub:BatchImportFindings",
            "Resource": "arn:aws:securityhub:*:111122223333:product/111122223333/default",
        })
        self.assertNotIn("ImportFindings", sam.statements())

    def test_a_config_rule_in_the_account_invokes_the_detector_from_this_account_only(self) -> None:
        sam = SamEvaluator(self.sam, ConfigRule="account", ConfigRuleFrequency="Six_Hours")
        found = self.resources(sam)
        self.assertEqual(found["ReplicaKeyPolicyConfigRule"], "AWS::Config::ConfigRule")
        self.assertNotIn("ReplicaKeyPolicyOrganizationConfigRule", found)
        permission = sam(self.sam["Resources"]["ConfigRuleInvokePermission"]["Properties"])
        self.assertEqual((permission["Principal"], permission["SourceAccount"]), ("config.amazonaws.com", "111122223333"))
        self.assertEqual(permission["FunctionName"], "<DetectorFunction.Arn>")
        rule = sam(self.sam["Resources"]["ReplicaKeyPolicyConfigRule"]["Properties"])
        self.assertEqual(rule["Source"]["SourceIdentifier"], "<DetectorFunction.Arn>")
        self.assertEqual(rule["Scope"], {"ComplianceResourceTypes": ["AWS::KMS::Key"]})
        self.assertEqual(
            [(d["MessageType"], d.get("MaximumExecutionFrequency")) for d in rule["Source"]["SourceDetails"]],
            [("ConfigurationItemChangeNotification", None), ("OversizedConfigurationItemChangeNotification", None), ("ScheduledNotification", "Six_Hours")],
        )
        self.assertEqual(sam.statements(detector=True)["AnswerConfigRule"]["Action"], "config:PutEvaluations")
        self.assertNotIn("AnswerConfigRule", sam.statements())
        self.assertNotIn("SECURITY_HUB", sam.environment())
        self.assertEqual(sam.environment("SECURITY_HUB", detector=True), {"SECURITY_HUB": "off"})

    def test_an_organization_rule_names_the_detector_for_every_member(self) -> None:
        sam = SamEvaluator(self.sam, ConfigRule="organization")
        found = self.resources(sam)
        self.assertEqual(found["ReplicaKeyPolicyOrganizationConfigRule"], "AWS::Config::OrganizationConfigRule")
        self.assertNotIn("ReplicaKeyPolicyConfigRule", found)
        self.assertNotIn("SourceAccount", self.sam["Resources"]["OrganizationConfigRuleInvokePermission"]["Properties"])
        self.assertEqual(sam(self.sam["Resources"]["OrganizationConfigRuleInvokePermission"]["Properties"]["FunctionName"]), "<DetectorFunction.Arn>")
        meta = sam(self.sam["Resources"]["ReplicaKeyPolicyOrganizationConfigRule"]["Properties"]["OrganizationCustomRuleMetadata"])
        self.assertEqual(meta["ResourceTypesScope"], ["AWS::KMS::Key"])
        self.assertEqual(meta["LambdaFunctionArn"], "<DetectorFunction.Arn>")

    def test_no_config_or_security_hub_resource_names_the_remediator(self) -> None:
        for name, r in self.sam["Resources"].items():
            if r["Type"] in ("AWS::Config::ConfigRule", "AWS::Config::OrganizationConfigRule") or name.startswith("Detector") and r["Type"] in ("AWS::Events::Rule", "AWS::Lambda::Permission"):
                with self.subTest(resource=name):
                    text = json.dumps(r)
                    self.assertIn('"DetectorFunction"', text)
                    self.assertNotIn('["Function", "Arn"]', text)
        for name in ("ConfigRuleInvokePermission", "OrganizationConfigRuleInvokePermission"):
            self.assertEqual(self.sam["Resources"][name]["Properties"]["FunctionName"], {"Fn::GetAtt": ["DetectorFunction", "Arn"]})


# The detector's environment: what is guarded, as the remediator's; never what writes or publishes
# (the contract's, declared in xtask/src/function.rs).
DETECTOR_SHARED_ENV = set(CONTRACT["function"]["environment"]["detector"]) & set(CONTRACT["function"]["environment"]["remediator"])
DETECTOR_NEVER_ENV = set(CONTRACT["function"]["environment"]["remediator"]) - DETECTOR_SHARED_ENV
# Every KMS action that changes a key, as the detector's roles deny them (and grant none): the
# contract's, declared in xtask/src/iam.rs.
KMS_WRITES = CONTRACT["iam"]["kms_writes"]
KMS_WRITE_PROBES = ["kms:PutKeyPolicy", "kms:CreateGrant", "kms:CreateKey", "kms:ReplicateKey", "kms:TagResource", "kms:UntagResource",
                    "kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:UpdatePrimaryRegion", "kms:UpdateAlias", "kms:DeleteAlias",
                    "kms:CreateAlias", "kms:RevokeGrant", "kms:RetireGrant", "kms:ImportKeyMaterial", "kms:EnableKey", "kms:CancelKeyDeletion"]


def _actions(statement: dict[str, Any]) -> list[str]:
    a = statement.get("Action", [])
    return a if isinstance(a, list) else [a]


def _allows(statements: list[dict[str, Any]], action: str) -> bool:
    import fnmatch
    return any(st["Effect"] == "Allow" and any(fnmatch.fnmatchcase(action.lower(), g.lower()) for g in _actions(st)) for st in statements)


def _denies(statements: list[dict[str, Any]], action: str) -> bool:
    import fnmatch
    return any(st["Effect"] == "Deny" and not st.get("Condition") and st.get("Resource") == "*"
               and any(fnmatch.fnmatchcase(action.lower(), g.lower()) for g in _actions(st)) for st in statements)


class DetectorTest(unittest.TestCase):
    """The detector (read-only): SAM and CDK declare the same one; its role writes no key anywhere;
    the remediator no longer reports findings or answers Config; the rules that invoke it."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.sam = _load_json(SAM_TRANSLATED)
        cls.cdk = cdk_hub()
        account, region = cdk_hub_environment()
        stack_name = cdk_hub_stack_name()
        cls.norm_sam = Normalizer(cls.sam, account, region, stack_name, **CDK_SYNTH_VALUES)
        cls.norm_cdk = Normalizer(cls.cdk, account, region, stack_name)

    def sam_statements(self, detector: bool, **values: str) -> list[dict[str, Any]]:
        """Every statement of the role's identity policies (inline and attached) at these values."""
        sam = SamEvaluator(self.sam, **values)
        role = _guard(self.sam, "AWS::IAM::Role", detector)[1]["Properties"]
        inline = [st for p in role["Policies"] for st in sam(p["PolicyDocument"]["Statement"])]
        attached = [st for r in attached_to(self.sam, _guard(self.sam, "AWS::IAM::Role", detector)[0], sam)
                    if "Condition" not in r or sam.condition(r["Condition"]) for st in sam(r["Properties"]["PolicyDocument"]["Statement"])]
        return inline + attached

    def cdk_statements(self, detector: bool, template: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        template = template or self.cdk
        role_id, role = _guard(template, "AWS::IAM::Role", detector)
        return [st for p in role["Properties"]["Policies"] for st in p["PolicyDocument"]["Statement"]] + [
            st for r in attached_to(template, role_id) for st in r["Properties"]["PolicyDocument"]["Statement"]]

    EVERYTHING = {"SecurityHub": "on", "ConfigRule": "organization", "MemberRoleName": "kms-replica-guard-member", "MemberAccounts": "organization",
                  "OrganizationId": "o-a1b2c3d4e5", "BaselineSsmParameter": "/kms/baseline"}

    def test_the_detector_role_may_write_no_key_and_denies_every_kms_write(self) -> None:
        for values in ({"SecurityHub": "on"}, {"ConfigRule": "account"}, self.EVERYTHING, {**self.EVERYTHING, "BaselineSsmParameter": "", "BaselineS3Prefix": "b-k/a/"}):
            statements = self.sam_statements(True, **values)
            for action in KMS_WRITE_PROBES:
                with self.subTest(template="SAM", action=action, **values):
                    self.assertFalse(_allows(statements, action), f"the detector role allows {action}")
                    self.assertTrue(_denies(statements, action), f"the detector role does not deny {action}")
        statements = self.cdk_statements(True)
        for action in KMS_WRITE_PROBES:
            with self.subTest(template="CDK", action=action):
                self.assertFalse(_allows(statements, action))
                self.assertTrue(_denies(statements, action))
        (never,) = [st for st in statements if st.get("Sid") == "NeverChangeKeys"]
        self.assertEqual(sorted(_actions(never)), KMS_WRITES)
        # Its KMS grants are exactly the remediator's reads.
        kms = sorted(a for st in statements if st["Effect"] == "Allow" for a in _actions(st) if a.startswith("kms:"))
        self.assertEqual(kms, ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:ListKeys", "kms:ListResourceTags"])
        remediator_reads = sorted(a for st in self.cdk_statements(False) if st["Effect"] == "Allow" for a in _actions(st)
                                  if a.startswith("kms:") and a != "kms:PutKeyPolicy")
        self.assertEqual(kms, remediator_reads)

    def test_the_remediator_role_no_longer_reports_findings_or_answers_config(self) -> None:
        for values in ({}, self.EVERYTHING, {**self.EVERYTHING, "ConfigRule": "account"}):
            with self.subTest(template="SAM", **values):
                statements = self.sam_statements(False, **values)
                for action in ("securityhub:BatchImportFindings", "config:PutEvaluations"):
                    self.assertFalse(_allows(statements, action), action)
        statements = self.cdk_statements(False)
        self.assertFalse([a for st in statements if st["Effect"] == "Allow" for a in _actions(st) if a.startswith(("securityhub:", "config:"))])
        self.assertFalse([a for st in statements for a in _actions(st) if a.startswith(("securityhub:", "config:"))], "not even in its Deny")
        env = remediator_fn(self.cdk)["Properties"]["Environment"]["Variables"]
        self.assertNotIn("SECURITY_HUB", env)

    def test_each_detector_role_is_the_contracts_plus_what_the_settings_add(self) -> None:
        # Its own statements are the contract's (test_contract.py for SAM; the CDK app builds them
        # from it); at the synth context's settings (securityHub on, configRule account) each stack
        # adds the findings and Config grants and the Deny outside the function, nothing else; the
        # trust is Lambda's, from this account only.
        account, _ = cdk_hub_environment()
        own = [s["sid"] for s in CONTRACT["iam"]["detector"]]
        added = ["ImportFindings", "AnswerConfigRule", "OnlyFromThisFunction"]
        for tool, statements, template, norm in (
            ("SAM", self.sam_statements(True, **CDK_SYNTH_VALUES), self.sam, self.norm_sam),
            ("CDK", self.cdk_statements(True), self.cdk, self.norm_cdk),
        ):
            with self.subTest(tool=tool):
                self.assertEqual(sorted(st.get("Sid", "") for st in statements), sorted(own + added))
                trust = norm(detector_role(template)["Properties"]["AssumeRolePolicyDocument"])
                self.assertEqual(trust["Statement"], [{
                    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": ["sts:AssumeRole"],
                    "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                }])

    def test_the_detector_is_never_reserved_and_retries_as_the_remediator(self) -> None:
        # Its variables, runtime, logging and log group, retries and on-failure queue: the contract's
        # (test_contract.py, contract.test.ts). Here: no reservation in either stack (SamConcurrencyTest
        # for SAM), and in each stack the same asynchronous settings as the remediator's.
        self.assertNotIn("ReservedConcurrentExecutions", detector_fn(self.cdk)["Properties"])
        # Async invocations: the remediator's retry settings and its on-failure queue (which are the
        # contract's: test_contract.py, contract.test.ts).
        configs = {}
        for tool, t, norm in (("SAM", self.sam, self.norm_sam), ("CDK", self.cdk, self.norm_cdk)):
            for c in _of_type(t, "AWS::Lambda::EventInvokeConfig").values():
                p = dict(c["Properties"])
                fn = p.pop("FunctionName")
                name = fn["Ref"] if isinstance(fn, dict) else fn
                p.pop("Qualifier", None)
                configs.setdefault(tool, {})["detector" if str(name).startswith("Detector") else "remediator"] = norm(p)
        for tool, found in configs.items():
            with self.subTest(tool=tool):
                self.assertEqual(found["detector"], found["remediator"])

    def test_the_detector_environment_is_the_remediators_for_what_is_guarded(self) -> None:
        for values in ({"SecurityHub": "on"}, {**TestValues.CATALOGUE, "ConfigRule": "account"}, self.EVERYTHING,
                       {"SecurityHub": "on", "TrustedAccounts": "444455556666", "ExemptionMaxDays": "30", "SweepRegions": "us-east-1,eu-west-1",
                        "ReservedConcurrency": "6", "RateGetKeyPolicy": "100", "MemberExternalId": "ext-1"}):
            with self.subTest(**values):
                sam = SamEvaluator(self.sam, **values)
                remediator, detector = sam.environment(), sam.environment(detector=True)
                self.assertEqual({k: v for k, v in detector.items() if k in DETECTOR_SHARED_ENV},
                                 {k: v for k, v in remediator.items() if k in DETECTOR_SHARED_ENV})
                self.assertEqual(set(detector) - DETECTOR_SHARED_ENV, {"MEMBER_READ_ROLE_NAME", "SECURITY_HUB"})
                self.assertEqual(detector["MEMBER_ROLE_NAME"], remediator["MEMBER_ROLE_NAME"], "the lockout check's member role is the writer")
                self.assertFalse(set(detector) & DETECTOR_NEVER_ENV)
                self.assertEqual(detector["REMEDIATOR_ROLE_ARN"], "<RemediatorRole.Arn>", "the lockout check judges for the writer")
        cdk_r = remediator_fn(self.cdk)["Properties"]["Environment"]["Variables"]
        cdk_d = detector_fn(self.cdk)["Properties"]["Environment"]["Variables"]
        self.assertEqual({k: v for k, v in cdk_d.items() if k in DETECTOR_SHARED_ENV}, {k: v for k, v in cdk_r.items() if k in DETECTOR_SHARED_ENV})
        self.assertFalse(set(cdk_d) & DETECTOR_NEVER_ENV)

    def test_in_member_accounts_the_detector_assumes_its_read_only_role_only(self) -> None:
        sam = SamEvaluator(self.sam, **self.EVERYTHING)
        self.assertEqual(sam.environment("MEMBER_READ_ROLE_NAME", detector=True), {"MEMBER_READ_ROLE_NAME": "kms-replica-guard-detector"})
        self.assertEqual(sam.environment("MEMBER_ROLE_NAME", detector=True), {"MEMBER_ROLE_NAME": "kms-replica-guard-member"})
        self.assertEqual(sam.environment("MEMBER_ROLE_NAME"), {"MEMBER_ROLE_NAME": "kms-replica-guard-member"})
        assume = [st for st in self.sam_statements(True, **self.EVERYTHING) if "sts:AssumeRole" in _actions(st) and st["Effect"] == "Allow"]
        self.assertEqual(assume, [{
            "Sid": "EnterMemberAccountsReadOnly", "Effect": "Allow", "Action": "sts:AssumeRole",
            "Resource": "arn:aws:iam::*:role/kms-replica-guard-detector",
            "Condition": {"StringEquals": {"aws:ResourceOrgID": "o-a1b2c3d4e5"}},
        }])
        self.assertEqual(SamEvaluator(self.sam, SecurityHub="on").environment("MEMBER_READ_ROLE_NAME", detector=True), {"MEMBER_READ_ROLE_NAME": ""})
        self.assertFalse([st for st in self.sam_statements(True, SecurityHub="on") if "sts:AssumeRole" in _actions(st) and st["Effect"] == "Allow"])

    def test_the_notification_rule_sends_the_guards_own_events_on_the_drift_bus_to_the_detector(self) -> None:
        for tool, t, norm in (("SAM", self.sam, self.norm_sam), ("CDK", self.cdk, self.norm_cdk)):
            with self.subTest(tool=tool):
                (rule,) = [r for n, r in _of_type(t, "AWS::Events::Rule").items() if n.startswith("DetectorNotification")]
                p = norm(rule["Properties"])
                account, _ = cdk_hub_environment()
                self.assertEqual(p["EventPattern"], {"source": ["kms-replica-guard"], "account": [account]}, "any detail-type, this account's only")
                self.assertEqual(p["EventBusName"], "<AWS::Events::EventBus>", "the drift bus")
                self.assertEqual([t_["Arn"] for t_ in p["Targets"]], ["<AWS::Lambda::Function.Arn>"])
                fn_ref = rule["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]
                self.assertTrue(fn_ref.startswith("DetectorFunction"), fn_ref)
                (permission,) = [r for r in _of_type(t, "AWS::Lambda::Permission").values()
                                 if r["Properties"].get("SourceArn", {}).get("Fn::GetAtt", [""])[0] in [n for n, x in _of_type(t, "AWS::Events::Rule").items() if x is rule]]
                self.assertEqual(permission["Properties"]["FunctionName"]["Fn::GetAtt"][0], fn_ref)
                self.assertEqual(permission["Properties"]["Principal"], "events.amazonaws.com")
        sam = SamEvaluator(self.sam, SecurityHub="on", DriftEventBus="default")
        self.assertEqual(sam(self.sam["Resources"]["DetectorNotificationRule"]["Properties"]["EventBusName"]), "default")

    def test_the_detector_sweeps_at_the_remediators_sweep_interval(self) -> None:
        for tool, t in (("SAM", self.sam), ("CDK", self.cdk)):
            with self.subTest(tool=tool):
                schedules = {}
                for n, r in _of_type(t, "AWS::Events::Rule").items():
                    if "ScheduleExpression" in r["Properties"]:
                        (target,) = r["Properties"]["Targets"]
                        schedules[target["Arn"]["Fn::GetAtt"][0].startswith("Detector")] = _resolve(r["Properties"]["ScheduleExpression"], t.get("Parameters", {}), t.get("Mappings", {}))
                self.assertEqual(schedules, {False: "rate(6 hours)", True: "rate(6 hours)"})
        for hours in ("1", "24"):
            sam = SamEvaluator(self.sam, SecurityHub="on", SweepIntervalHours=hours)
            mapping = self.sam["Mappings"]["SweepInterval"][hours]["Schedule"]
            self.assertEqual(self.sam["Resources"]["DetectorSweepRule"]["Properties"]["ScheduleExpression"],
                             {"Fn::FindInMap": ["SweepInterval", {"Ref": "SweepIntervalHours"}, "Schedule"]})
            self.assertTrue(mapping.startswith("rate("), sam.values["SweepIntervalHours"])

    def test_the_config_rule_targets_the_detector_in_both(self) -> None:
        for tool, t in (("SAM", self.sam), ("CDK", self.cdk)):
            with self.subTest(tool=tool):
                (rule,) = _of_type(t, "AWS::Config::ConfigRule").values()
                self.assertTrue(rule["Properties"]["Source"]["SourceIdentifier"]["Fn::GetAtt"][0].startswith("DetectorFunction"))
                permissions = [r for r in _of_type(t, "AWS::Lambda::Permission").values() if r["Properties"]["Principal"] == "config.amazonaws.com"]
                self.assertTrue(permissions)
                for permission in permissions:
                    self.assertTrue(permission["Properties"]["FunctionName"]["Fn::GetAtt"][0].startswith("DetectorFunction"))


class TestValues:
    CATALOGUE = {"BaselineS3Prefix": "baseline-bucket/kms/", "BaselineDefault": "strict", "BaselineScope": "strict=111122223333"}


class SamConcurrencyTest(unittest.TestCase):
    """No reservation by default; a reservation below SweepWorkerConcurrency + 2 is refused (SAM
    Rules, by equality only, checked here against the arithmetic for every value they can see);
    RATE_INSTANCES is the reservation, or unreserved the sweep's workers."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.sam = _load_json(SAM_TRANSLATED)
        cls.params = cls.sam["Parameters"]

    def test_no_reservation_by_default(self) -> None:
        self.assertEqual(str(self.params["ReservedConcurrency"]["Default"]), "0")
        fn = remediator_fn(self.sam)["Properties"]
        self.assertIs(SamEvaluator(self.sam)(fn["ReservedConcurrentExecutions"]), SamEvaluator.NO_VALUE)
        self.assertNotIn("ReservedConcurrentExecutions", detector_fn(self.sam)["Properties"], "the detector is never reserved")

    def test_a_reservation_below_the_sweep_workers_plus_two_is_refused(self) -> None:
        workers = [str(v) for v in self.params["SweepWorkerConcurrency"]["AllowedValues"]]
        self.assertEqual(str(self.params["SweepWorkerConcurrency"]["Default"]), "2")
        checked = 0
        for s in workers:
            for r in range(0, int(s) + 40):
                refused = SamEvaluator(self.sam, SweepWorkerConcurrency=s, ReservedConcurrency=str(r)).refused_by()
                expected = 0 < r < int(s) + 2
                self.assertEqual(bool(refused), expected, f"SweepWorkerConcurrency={s} ReservedConcurrency={r}: {refused}")
                checked += 1
        self.assertGreater(checked, 1000)

    def test_the_cdk_app_allows_the_same_sweep_worker_counts(self) -> None:
        text = (ROOT / "infra" / "cdk" / "lib" / "config.ts").read_text(encoding="utf-8")
        found = re.search(r"SWEEP_WORKER_CONCURRENCY_VALUES = \[([0-9, ]+)\]", text)
        assert found, "SWEEP_WORKER_CONCURRENCY_VALUES not found in infra/cdk/lib/config.ts"
        cdk = [int(v) for v in found.group(1).split(",")]
        self.assertEqual(cdk, [int(v) for v in self.params["SweepWorkerConcurrency"]["AllowedValues"]])

    def test_rate_instances_is_the_reservation_or_the_sweep_workers(self) -> None:
        for values, expected in (({}, "2"), ({"SweepWorkerConcurrency": "10"}, "10"),
                                 ({"SweepWorkerConcurrency": "10", "ReservedConcurrency": "12"}, "12")):
            with self.subTest(**values):
                sam = SamEvaluator(self.sam, **values)
                self.assertEqual(sam.environment("RATE_INSTANCES"), {"RATE_INSTANCES": expected})
                fn = remediator_fn(self.sam)["Properties"]
                reserved = sam(fn["ReservedConcurrentExecutions"])
                self.assertEqual(reserved if reserved is not SamEvaluator.NO_VALUE else "0", values.get("ReservedConcurrency", "0"))


class SamOrganisationRuleTest(unittest.TestCase):
    """Member accounts need OrganizationId: the hub bus admits their events by organisation only."""

    def test_member_accounts_without_an_organization_id_are_refused(self) -> None:
        sam = _load_json(SAM_TRANSLATED)
        refused = lambda **v: SamEvaluator(sam, **v).refused_by()  # noqa: E731
        self.assertEqual(refused(), [])
        self.assertIn("OrganizationWithMemberAccounts", refused(MemberRoleName="m", MemberAccounts="222233334444"))
        self.assertIn("OrganizationWithMemberAccounts", refused(MemberRoleName="m", MemberAccounts="organization"))
        self.assertEqual(refused(MemberRoleName="m", MemberAccounts="222233334444", OrganizationId="o-a1b2c3d4e5"), [])
        self.assertEqual(refused(OrganizationId="o-a1b2c3d4e5"), [])


class SamGuardrailSettingsTest(unittest.TestCase):
    """The guardrail parameters reach the environment only when set (infra/cdk/test: the same)."""

    NAMES = {
        "TrustedAccounts": "TRUSTED_ACCOUNTS",
        "TrustedOrgs": "TRUSTED_ORGS",
        "ExemptionMaxDays": "EXEMPTION_MAX_DAYS",
        "BaselineSha256": "BASELINE_SHA256",
        "BaselineScope": "BASELINE_SCOPE",
    }

    @classmethod
    def setUpClass(cls) -> None:
        cls.sam = _load_json(SAM_TRANSLATED)

    def test_unset_they_are_absent_and_set_they_pass_through(self) -> None:
        self.assertFalse(set(SamEvaluator(self.sam).environment()) & set(self.NAMES.values()))
        values = {
            "TrustedAccounts": "444455556666,777788889999",
            "TrustedOrgs": "o-a1b2c3d4e5",
            "ExemptionMaxDays": "90",
            "BaselineSha256": f"strict={'a' * 64},default={'0' * 64}",
            "BaselineScope": "partner-share=444455556666|777788889999,strict=111122223333",
        }
        env = SamEvaluator(self.sam, **values).environment(*self.NAMES.values())
        self.assertEqual(env, {self.NAMES[k]: v for k, v in values.items()})

    def test_the_patterns_take_what_the_function_reads_and_nothing_else(self) -> None:
        params = self.sam["Parameters"]
        pattern = {name: re.compile(params[name]["AllowedPattern"]) for name in self.NAMES}
        digest = "0123456789abcdef" * 4
        cases = {
            "TrustedAccounts": (["", "444455556666", "444455556666,777788889999"],
                                ["12345678901", "444455556666,", "444455556666 ,777788889999", "organization"]),
            "TrustedOrgs": (["", "o-a1b2c3d4e5", "o-a1b2c3d4e5,o-zzzzzzzzzzzzzzzzzzzz"],
                            ["o-short", "O-A1B2C3D4E5", "o-a1b2c3d4e5,", "r-a1b2"]),
            "ExemptionMaxDays": (["", "1", "90", "3650"], ["0", "-1", "1.5", "30d", "3651", "99999"]),
            "BaselineSha256": (["", digest, digest.upper(), f"strict={digest}", f"strict={digest},default.v2={digest}"],
                               [digest[:-1], "g" * 64, f"={digest}", f"strict:{digest}", f"strict={digest},", f"a b={digest}"]),
            "BaselineScope": (["", "partner-share=111122223333", "a=111122223333|444455556666,b.v2=777788889999"],
                              ["partner-share", "a=", "a=12345678901", "a=111122223333,", "a=111122223333|", "a b=111122223333",
                               "a=111122223333;444455556666", "=111122223333"]),
        }
        for name, (good, bad) in cases.items():
            for value in good:
                with self.subTest(parameter=name, value=value):
                    self.assertRegex(value, pattern[name])
            for value in bad:
                with self.subTest(parameter=name, value=value):
                    self.assertNotRegex(value, pattern[name])


class IncludedTemplatesTest(unittest.TestCase):
    """The CDK Member and Guardrails stacks include infra/sam/member.yaml and
    infra/guardrails/guardrails.yaml (CfnInclude): their templates are those files, every section, with
    only the member stack's hub parameters given the synth context's defaults."""

    @staticmethod
    def same_form(value: Any) -> Any:
        """`!GetAtt id.attr` as CDK writes it ("id.attr") in the form the YAML loader gives ([id, attr])."""
        if isinstance(value, dict):
            if set(value) == {"Fn::GetAtt"} and isinstance(value["Fn::GetAtt"], str):
                return {"Fn::GetAtt": value["Fn::GetAtt"].split(".", 1)}
            return {k: IncludedTemplatesTest.same_form(v) for k, v in value.items()}
        if isinstance(value, list):
            return [IncludedTemplatesTest.same_form(v) for v in value]
        return value

    def test_the_cdk_member_stack_is_member_yaml_with_the_hub_defaults(self) -> None:
        written = cfn_yaml.load(ROOT / "infra" / "sam" / "member.yaml")
        synthesized = self.same_form(_load_json(CDK_OUT / "Member.template.json"))
        account, region = cdk_hub_environment()
        for name, default in (("HubAccountId", account), ("HubRegion", region), ("RoleRegion", region)):
            self.assertNotIn("Default", written["Parameters"][name], "the StackSet gives it")
            written["Parameters"][name]["Default"] = default
        self.assertEqual(synthesized, written)

    def test_the_cdk_guardrails_stack_is_guardrails_yaml(self) -> None:
        written = cfn_yaml.load(ROOT / "infra" / "guardrails" / "guardrails.yaml")
        self.assertEqual(self.same_form(_load_json(CDK_OUT / "Guardrails.template.json")), written)


if __name__ == "__main__":
    unittest.main(verbosity=2)
