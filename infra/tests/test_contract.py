"""The SAM templates against infra/contract.json, the stacks' contract that `cargo xtask docs`
writes from the settings declared in the code (src/config/vars.rs) and the engine's names:

- every setting with a SAM parameter: the parameter exists, a function's environment variable of
  that setting is set from it (the remediator's, or for SECURITY_HUB the detector's; a variable
  both set from the same parameter: the detector's read-only member role is a setting of its own, MEMBER_READ_ROLE_NAME), and the parameter accepts no probe value that the function's
  own parser refuses (a value CloudFormation accepts but the function refuses deploys fine and
  then fails every cold start). Stricter is allowed: a parameter may refuse what the function
  would take. The empty string is the parameters' "unset" and is not judged;
- every metric an alarm of the hub template watches is a metric the function publishes (or an
  AWS/Lambda or AWS/SQS metric), and the default namespace and tag keys are the function's;
- the hub template's alarms are the contract's `alarms` (declared in xtask/src/alarms.rs), both
  ways: each alarm of the template is the one the contract describes, property for property (name,
  description and its runbook page, metric or metric math, statistic, period, threshold or the
  parameter that sets it, comparison, evaluation periods, datapoints, missing data, actions,
  condition and what that condition tests), and each alarm of the contract is in the template;
- the rules (the contract's `rules`, declared in xtask/src/rules.rs from the function's own names):
  every KMS rule of every SAM template (the hub's, the spokes' and the members' forwarding rules)
  matches exactly the KMS calls the function acts on; every rule on the IAM calls that change a
  guard role names the same calls; the hub's notification rules on the guard's own events are
  the contract's, both ways (name, description, pattern, bus, target and message), and the guard
  change rule sends the contract's message;
- the outputs (the contract's `outputs`, declared in xtask/src/outputs.rs), both ways, in every
  stack of both tools: the SAM templates and the synthesized CDK stacks (infra/cdk/cdk.out, which
  `make infra-test` synthesizes before this runs): each output's key, what it gives (Ref or Arn
  of the resource with that logical id; CDK appends its hash) and the condition it exists under;
- the functions (the contract's `function`, xtask/src/function.rs): each SAM function's runtime,
  architecture, handler, binary, log format and levels and variables (those set only when given,
  too), its asynchronous retries and on-failure queue, and the defaults of memory, timeout, log
  retention and level, retries and event age;
- the function roles' own statements (the contract's `iam`, xtask/src/iam.rs): the SAM
  remediator's and detector's inline policies are exactly those, in order (Sid, effect, actions,
  resources and condition as Fn::Sub text), the hub detector's findings and Config grants, the
  member stack's writer and detector roles, and the backups bucket's, the alarm topic's and its
  key's policies are the contract's;
- the hub's resources (the contract's `resources`, xtask/src/resources.rs): how many of each type
  at the defaults, with the detector and in enforce mode (IAM policies aside), and the backups
  bucket's properties and retention;
- the hub template's dashboard is the contract's `dashboard` (declared in xtask/src/dashboard.rs):
  each widget at its place, with its title, view and Region, and its lines (each metric with its
  namespace, dimensions, statistic and period, or the SEARCH expression), in order.

The CDK app imports the contract itself (infra/cdk/lib/config.ts) and checks its context the same
way (infra/cdk/test/contract.test.ts).
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

CONTRACT = json.loads((ROOT / "infra" / "contract.json").read_text(encoding="utf-8"))
HUB = cfn_yaml.load(ROOT / "infra" / "sam" / "template.yaml")
SAM_TEMPLATES = {p.name: cfn_yaml.load(p) for p in sorted((ROOT / "infra" / "sam").glob("*.yaml"))}


def sam_accepts(param: dict[str, Any], value: str) -> bool:
    """Whether CloudFormation accepts `value` for the parameter (its type and constraints)."""
    kind = param.get("Type", "String")
    if kind == "Number":
        try:
            n = float(value)
        except ValueError:
            return False
        if "MinValue" in param and n < float(param["MinValue"]):
            return False
        if "MaxValue" in param and n > float(param["MaxValue"]):
            return False
    if "AllowedValues" in param and value not in [str(v) for v in param["AllowedValues"]]:
        return False
    if "AllowedPattern" in param and re.fullmatch(param["AllowedPattern"], value) is None:
        return False
    if kind == "String":
        if "MinLength" in param and len(value) < int(param["MinLength"]):
            return False
        if "MaxLength" in param and len(value) > int(param["MaxLength"]):
            return False
    return True


def function_environments() -> dict[str, dict[str, Any]]:
    """The environment of each function of the hub template, by logical id (the remediator
    `Function`, the detector `DetectorFunction`)."""
    fns = {n: r for n, r in HUB["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert set(fns) == {"Function", "DetectorFunction"}, f"the remediator and the detector in the hub template: {sorted(fns)}"
    return {n: r["Properties"]["Environment"]["Variables"] for n, r in fns.items()}


def refers_to(node: Any, name: str) -> bool:
    """Whether a template value refers to parameter `name` (Ref, or inside Sub/If/Join...)."""
    if isinstance(node, dict):
        if node.get("Ref") == name:
            return True
        return any(refers_to(v, name) for v in node.values())
    if isinstance(node, list):
        return any(refers_to(v, name) for v in node)
    if isinstance(node, str):
        return f"${{{name}}}" in node
    return False


def knob_value(knob: Any) -> Any:
    """A contract value that is either literal or a stack setting: the setting's parameter, {"Ref": ...}."""
    return {"Ref": knob["sam_parameter"]} if isinstance(knob, dict) else knob


def sam_alarm(alarm: dict[str, Any]) -> dict[str, Any]:
    """The SAM resource the contract's alarm describes, as the template writes it."""
    if isinstance(alarm["period"], int):
        period: Any = alarm["period"]
    else:
        # CloudFormation has no arithmetic: the mapping SweepInterval holds each allowed value's seconds.
        period = {"Fn::FindInMap": ["SweepInterval", {"Ref": alarm["period"]["sweep_interval_hours"]["sam_parameter"]}, "Seconds"]}

    def dimensions(series: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"Name": name, "Value": value} for name, value in series["dimensions"].items()]

    props: dict[str, Any] = {
        "AlarmName": {"Fn::Sub": f"${{AWS::StackName}}-{alarm['name']}"},
        "AlarmDescription": alarm["description"],
    }
    if "math" in alarm:
        math = alarm["math"]
        expression = math["expression"]
        props["Metrics"] = [
            {
                "Id": math["id"],
                "Label": math["label"],
                "Expression": {"Fn::Sub": expression} if "${" in expression else expression,
                "ReturnData": True,
            }
        ] + [
            {
                "Id": m["id"],
                "MetricStat": {
                    "Metric": {
                        "Namespace": knob_value(m["namespace"]),
                        "MetricName": m["metric_name"],
                        **({"Dimensions": dimensions(m)} if m["dimensions"] else {}),
                    },
                    "Period": period,
                    "Stat": m["statistic"],
                },
                "ReturnData": False,
            }
            for m in math["metrics"]
        ]
    else:
        m = alarm["metric"]
        props.update(
            {
                "Namespace": knob_value(m["namespace"]),
                "MetricName": m["metric_name"],
                **({"Dimensions": dimensions(m)} if m["dimensions"] else {}),
                "Statistic": m["statistic"],
                "Period": period,
            }
        )
    props.update(
        {
            "EvaluationPeriods": alarm["evaluation_periods"],
            **({"DatapointsToAlarm": alarm["datapoints_to_alarm"]} if alarm["datapoints_to_alarm"] is not None else {}),
            "Threshold": knob_value(alarm["threshold"]),
            "ComparisonOperator": alarm["comparison_operator"],
            "TreatMissingData": alarm["treat_missing_data"],
            "AlarmActions": [{"Ref": "AlarmTopic"}],
            "OKActions": [{"Ref": "AlarmTopic"}],
        }
    )
    resource: dict[str, Any] = {"Type": "AWS::CloudWatch::Alarm"}
    if alarm["condition"] is not None:
        resource["Condition"] = alarm["condition"]["sam_condition"]
    resource["Properties"] = props
    return resource


def sub_with_dummies(text: str) -> str:
    """An Fn::Sub string with each `${Name}` replaced by `<Name>` (and `${!Literal}` by `${Literal}`)."""
    return re.sub(r"\$\{(!?)([^}]*)\}", lambda m: "${" + m.group(2) + "}" if m.group(1) else f"<{m.group(2)}>", text)


def dashboard_lines(props: dict[str, Any]) -> list[dict[str, Any]]:
    """A graph widget's lines: each metric with its dimensions, statistic and period (its own, else
    the widget's; CloudWatch's default period is 300 s), or an expression with its options."""
    lines = []
    for line in props["metrics"]:
        options = line[-1] if isinstance(line[-1], dict) else {}
        if "expression" in options:
            lines.append(dict(options))
            continue
        namespace, metric_name, *pairs = line[:-1] if options else line
        lines.append(
            {
                "namespace": namespace,
                "metric_name": metric_name,
                "dimensions": dict(zip(pairs[::2], pairs[1::2])),
                "statistic": options.get("stat", props.get("stat")),
                "period": options.get("period", props.get("period", 300)),
            }
        )
    return lines


def contract_widget(widget: dict[str, Any]) -> dict[str, Any]:
    """The contract's widget as `dashboard_lines` reads the SAM template's, each parameter as `<Name>`."""
    if "search" in widget:
        search = widget["search"]
        parameters = {p["sam_parameter"] for p in search["parameters"]}

        def parameter(m: re.Match[str]) -> str:
            assert m.group(1) in parameters, f"{widget['title']}: ${{{m.group(1)}}} is not one of its parameters"
            return f"<{m.group(1)}>"

        lines = [{"expression": re.sub(r"\$\{(\w+)\}", parameter, search["expression"]), "id": search["id"]}]
    else:
        lines = [
            {
                "namespace": f"<{m['namespace']['sam_parameter']}>" if isinstance(m["namespace"], dict) else m["namespace"],
                "metric_name": m["metric_name"],
                "dimensions": m["dimensions"],
                "statistic": m["statistic"],
                "period": widget["period"],
            }
            for m in widget["metrics"]
        ]
    place = {k: widget[k] for k in ("x", "y", "width", "height")}
    return {"type": "metric", **place, "title": widget["title"], "view": widget["view"], "region": "<AWS::Region>", "lines": lines}


def event_patterns(node: Any) -> list[dict[str, Any]]:
    """Every EventPattern (a rule's) or Pattern (a SAM function's EventBridgeRule event) in a template."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("EventPattern", "Pattern") and isinstance(v, dict) and "source" in v:
                found.append(v)
            else:
                found.extend(event_patterns(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(event_patterns(v))
    return found


def branches(pattern: dict[str, Any]) -> list[dict[str, Any]]:
    """A pattern's detail, or each branch of its detail's $or."""
    detail = pattern.get("detail") or {}
    return detail.get("$or", [detail])


def sam_message(message: dict[str, Any]) -> dict[str, Any]:
    """The InputTransformer of the contract's message, as the template writes it."""
    return {"InputPathsMap": message["input_paths_map"], "InputTemplate": message["input_template"]}


class SamRulesAgainstTheContract(unittest.TestCase):
    maxDiff = None
    RULES = CONTRACT["rules"]

    def test_every_kms_rule_matches_exactly_the_calls_the_function_acts_on(self) -> None:
        checked = []
        for name, template in SAM_TEMPLATES.items():
            for pattern in event_patterns(template):
                if "aws.kms" not in pattern["source"]:
                    continue
                with self.subTest(template=name):
                    self.assertEqual(pattern["source"], ["aws.kms"])
                    self.assertEqual(pattern["detail"]["eventName"], self.RULES["kms_event_names"])
                    checked.append(name)
        # The hub's own rule, and the forwarding rules of the spokes and the member accounts.
        self.assertEqual(sorted(checked), ["member.yaml", "spoke.yaml", "template.yaml"])

    def test_every_rule_on_the_guard_roles_names_the_calls_that_change_them(self) -> None:
        checked = []
        for name, template in SAM_TEMPLATES.items():
            for pattern in event_patterns(template):
                for branch in branches(pattern):
                    if branch.get("eventSource") == ["iam.amazonaws.com"]:
                        with self.subTest(template=name):
                            self.assertEqual(branch["eventName"], self.RULES["guard_role_event_names"])
                            checked.append(name)
        # The hub's guard change rule, and the us-east-1 spoke's forwarding rule.
        self.assertEqual(sorted(checked), ["spoke.yaml", "template.yaml"])

    def test_the_notification_rules_are_the_contracts_both_ways(self) -> None:
        on_guard_events = {
            n: r for n, r in HUB["Resources"].items()
            if r["Type"] == "AWS::Events::Rule"
            and self.RULES["guard_event_source"] in ((r["Properties"].get("EventPattern") or {}).get("source") or [])
            and r["Properties"]["Targets"][0]["Arn"] == {"Ref": "AlarmTopic"}
        }
        in_contract = {n["logical_id"]: n for n in self.RULES["notifications"]}
        self.assertEqual(sorted(on_guard_events), sorted(in_contract), "the rules that tell the alarm topic of the guard's events")
        for logical_id, n in in_contract.items():
            with self.subTest(rule=logical_id):
                props = on_guard_events[logical_id]["Properties"]
                self.assertEqual(props["Name"], {"Fn::Sub": f"${{AWS::StackName}}-{n['name']}"})
                self.assertEqual(props["Description"], n["description"])
                # The guard's own events, put on the drift bus by this account.
                self.assertEqual(props["EventPattern"], {**n["event_pattern"], "account": [{"Ref": "AWS::AccountId"}]})
                self.assertEqual(props["EventBusName"], {"Fn::If": ["DedicatedDriftBus", {"Ref": "DriftBus"}, "default"]})
                self.assertEqual(props["State"], "ENABLED")
                (target,) = props["Targets"]
                self.assertEqual(target["InputTransformer"], sam_message(n["message"]))

    def test_the_guard_change_rule_sends_the_contracts_message(self) -> None:
        props = HUB["Resources"]["GuardChangeNotificationRule"]["Properties"]
        (target,) = props["Targets"]
        self.assertEqual(target["Arn"], {"Ref": "AlarmTopic"})
        self.assertEqual(target["InputTransformer"], sam_message(self.RULES["guard_change_message"]))


SAM_STACKS = {"hub": "template.yaml", "member": "member.yaml", "spoke": "spoke.yaml"}
CDK_OUT = ROOT / "infra" / "cdk" / "cdk.out"


def cdk_stacks() -> dict[str, list[dict[str, Any]]]:
    """The synthesized CDK templates of each stack kind (a spoke per Region)."""
    found: dict[str, list[dict[str, Any]]] = {"hub": [], "member": [], "spoke": []}
    for path in sorted(CDK_OUT.glob("*.template.json")):
        kind = path.name.split(".")[0].split("-")[0].lower()
        if kind in found:
            found[kind].append(json.loads(path.read_text(encoding="utf-8")))
    for kind, templates in found.items():
        if not templates:
            raise AssertionError(f"no synthesized CDK {kind} stack in {CDK_OUT}: run `make synth` (or `make infra-test`)")
    return found


def output_value(value: dict[str, Any] | str, tool: str) -> Any:
    """A template's output value in the contract's terms: {"ref": id}, {"arn": id}, else "computed"
    (CDK's logical ids are the construct ids with an 8-digit hash). A "computed" output of the
    contract is the stack's own choice (a bus it builds the ARN of, or picks): only its key is held."""
    strip = (lambda i: re.sub(r"[0-9A-F]{8}$", "", i)) if tool == "CDK" else (lambda i: i)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return {"ref": strip(value["Ref"])}
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        # [id, attribute], or "id.attribute" as a template may write it (the included StackSet template)
        name, attr = value["Fn::GetAtt"] if isinstance(value["Fn::GetAtt"], list) else value["Fn::GetAtt"].split(".", 1)
        if attr == "Arn":
            return {"arn": strip(name)}
    return "computed"


class OutputsAgainstTheContract(unittest.TestCase):
    """Both tools' stacks against the contract's outputs."""

    maxDiff = None

    def declared(self, kind: str) -> dict[str, dict[str, Any]]:
        return {o["name"]: o for o in CONTRACT["outputs"] if o["stack"] == kind}

    def test_the_sam_outputs_are_the_contracts_both_ways(self) -> None:
        for kind, file in SAM_STACKS.items():
            outputs = SAM_TEMPLATES[file]["Outputs"]
            with self.subTest(stack=file):
                self.assertEqual(sorted(outputs), sorted(self.declared(kind)))
                for name, o in self.declared(kind).items():
                    if o["value"] != "computed":
                        self.assertEqual(output_value(outputs[name]["Value"], "SAM"), o["value"], name)
                    self.assertEqual(outputs[name].get("Condition"), o["condition"], name)
                    self.assertTrue(outputs[name].get("Description"), f"{name} says what it is")

    def test_the_cdk_outputs_are_the_contracts(self) -> None:
        # The hub decides its conditions at synth time (an output under one is there or not; the
        # synth context has the detector); the StackSet templates keep them.
        checked = 0
        for kind, templates in cdk_stacks().items():
            for template in templates:
                outputs = template.get("Outputs", {})
                declared = self.declared(kind)
                with self.subTest(stack=kind):
                    self.assertLessEqual(set(outputs), set(declared), "outputs the contract does not declare")
                    for name, o in declared.items():
                        if o["condition"] is None or kind == "hub" and o["condition"] == "HasDetector":
                            self.assertIn(name, outputs)
                        if name not in outputs:
                            continue
                        if o["value"] != "computed":
                            self.assertEqual(output_value(outputs[name]["Value"], "CDK"), o["value"], name)
                        self.assertIn(outputs[name].get("Condition"), (None, o["condition"]), name)
                        self.assertTrue(outputs[name].get("Description"), f"{name} says what it is")
                        checked += 1
        self.assertGreaterEqual(checked, 20)


def as_sub_text(value: Any) -> Any:
    """A template value as the contract writes it: Fn::Sub text (`${Name}`, `${Name.Arn}`), the drift
    bus's either-or as `${DriftBusArn}`, lists for Action and Resource."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return value["Fn::Sub"]
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return f"${{{value['Ref']}}}"
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    if value == {"Fn::If": ["DedicatedDriftBus", {"Fn::GetAtt": ["DriftBus", "Arn"]},
                            {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default"}]}:
        return "${DriftBusArn}"
    if isinstance(value, dict):
        return {k: as_sub_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_sub_text(v) for v in value]
    raise AssertionError(f"not a value the contract can say: {value}")


class SamRoleAgainstTheContract(unittest.TestCase):
    maxDiff = None

    @staticmethod
    def identity_policy(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """An identity policy's statements in the contract's terms."""
        listed = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
        return [
            {
                "sid": st["Sid"],
                "effect": st["Effect"],
                "actions": listed(st["Action"]),
                "resources": [as_sub_text(r) for r in listed(st["Resource"])],
                **({"condition": as_sub_text(st["Condition"])} if "Condition" in st else {}),
            }
            for st in statements
        ]

    def inline(self, role: str) -> list[dict[str, Any]]:
        """The hub role's inline statements in the contract's terms."""
        (policy,) = HUB["Resources"][role]["Properties"]["Policies"]
        return self.identity_policy(policy["PolicyDocument"]["Statement"])

    @staticmethod
    def resource_policy(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A resource policy's statements in the contract's terms."""
        listed = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
        return [
            {
                "sid": st["Sid"], "effect": st["Effect"], "principal": st["Principal"], "actions": listed(st["Action"]),
                "resources": [as_sub_text(r) for r in listed(st["Resource"])],
                **({"condition": as_sub_text(st["Condition"])} if "Condition" in st else {}),
            }
            for st in statements
        ]

    def test_the_backups_bucket_policy_is_the_contracts(self) -> None:
        props = HUB["Resources"]["BackupBucketPolicy"]["Properties"]
        self.assertEqual(props["Bucket"], {"Ref": "BackupBucket"})
        self.assertEqual(self.resource_policy(props["PolicyDocument"]["Statement"]), CONTRACT["iam"]["backups_bucket"])

    def test_the_alarm_topic_admits_the_contracts_publishers_only(self) -> None:
        props = HUB["Resources"]["AlarmTopicPolicy"]["Properties"]
        self.assertEqual(props["Topics"], [{"Ref": "AlarmTopic"}])
        self.assertEqual(self.resource_policy(props["PolicyDocument"]["Statement"]), CONTRACT["iam"]["alarm_topic"])

    def test_the_alarm_topic_key_admits_the_contracts_publishers(self) -> None:
        # Beside the account's administration of the key (AccountAdministration).
        statements = HUB["Resources"]["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
        services = [st for st in statements if "Service" in st["Principal"]]
        self.assertEqual(self.resource_policy(services), CONTRACT["iam"]["alarm_topic_key"])
        (account,) = [st for st in statements if "Service" not in st["Principal"]]
        self.assertEqual(account["Principal"], {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}})

    def test_the_remediator_roles_own_statements_are_the_contracts(self) -> None:
        self.assertEqual(self.inline("RemediatorRole"), CONTRACT["iam"]["remediator"])

    def test_the_detector_roles_own_statements_are_the_contracts(self) -> None:
        self.assertEqual(self.inline("DetectorRole"), CONTRACT["iam"]["detector"])

    def test_the_member_roles_are_the_contracts(self) -> None:
        member = SAM_TEMPLATES["member.yaml"]["Resources"]
        for role, key in (("MemberRole", "member_writer"), ("DetectorRole", "member_detector")):
            with self.subTest(role=role):
                (policy,) = member[role]["Properties"]["Policies"]
                self.assertEqual(self.identity_policy(policy["PolicyDocument"]["Statement"]), CONTRACT["iam"][key])
        denies = [st for st in member["DetectorRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"] if st["Sid"] == "NeverChangeKeys"]
        self.assertEqual([d["Action"] for d in denies], [CONTRACT["iam"]["kms_writes"]])

    def test_the_hub_detectors_findings_and_config_grants_are_the_contracts(self) -> None:
        for policy, key in (("ImportFindingsPolicy", "import_findings"), ("PutEvaluationsPolicy", "answer_config_rule")):
            with self.subTest(policy=policy):
                r = HUB["Resources"][policy]
                self.assertEqual(r["Properties"]["Roles"], [{"Ref": "DetectorRole"}])
                self.assertEqual(self.identity_policy(r["Properties"]["PolicyDocument"]["Statement"]), CONTRACT["iam"][key])


SAM_TRANSLATED = ROOT / "infra" / ".build" / "sam" / "template.cfn.json"


def inventory(template: dict[str, Any], evaluator: Any) -> dict[str, int]:
    """The template's resources by type, those whose condition holds for the evaluator's values; IAM
    policies aside (the contract's `resources` does not count them: grants are checked with `iam`)."""
    counts: dict[str, int] = {}
    for r in template["Resources"].values():
        if r["Type"] == "AWS::IAM::Policy" or ("Condition" in r and not evaluator.condition(r["Condition"])):
            continue
        counts[r["Type"]] = counts.get(r["Type"], 0) + 1
    return counts


def plus(*inventories: dict[str, int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for inv in inventories:
        for t, n in inv.items():
            total[t] = total.get(t, 0) + n
    return total


def with_retention(value: Any, days: Any) -> Any:
    """The contract's bucket properties with its `${BackupRetentionDays}` given."""
    if value == "${BackupRetentionDays}":
        return days
    if isinstance(value, dict):
        return {k: with_retention(v, days) for k, v in value.items()}
    if isinstance(value, list):
        return [with_retention(v, days) for v in value]
    return value


class SamResourcesAgainstTheContract(unittest.TestCase):
    """The SAM hub's resources and backups bucket are the contract's `resources`
    (xtask/src/resources.rs); the CDK hub's: contract.test.ts, at the same settings."""

    R = CONTRACT["resources"]
    maxDiff = None

    @classmethod
    def setUpClass(cls) -> None:
        from test_templates import SamEvaluator  # the translated template's conditions, evaluated

        if not SAM_TRANSLATED.is_file():
            raise AssertionError(f"{SAM_TRANSLATED} is missing: run `make infra-test` (sam-translate) first")
        cls.sam = json.loads(SAM_TRANSLATED.read_text(encoding="utf-8"))
        cls.at = staticmethod(lambda **values: inventory(cls.sam, SamEvaluator(cls.sam, **values)))

    def test_the_hub_at_its_defaults_and_what_each_part_adds_are_the_contracts(self) -> None:
        defaults = self.R["hub_at_defaults"]
        for values, expected in (
            ({}, defaults),
            ({"SecurityHub": "on", "ConfigRule": "account"}, plus(defaults, self.R["detector_adds"])),
            ({"RemediationMode": "enforce"}, plus(defaults, self.R["enforce_adds"])),
        ):
            with self.subTest(values=values):
                self.assertEqual(self.at(**values), expected)

    def test_the_backups_bucket_is_the_contracts_and_retained_with_its_policy(self) -> None:
        bucket = HUB["Resources"]["BackupBucket"]
        declared = self.R["backups_bucket"]
        self.assertEqual(bucket["Properties"], with_retention(declared["properties"], {"Ref": "BackupRetentionDays"}))
        self.assertTrue(declared["retained"])
        for name in ("BackupBucket", "BackupBucketPolicy"):
            for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
                self.assertEqual(HUB["Resources"][name].get(policy), "Retain", f"{name} {policy}")


class SamFunctionsAgainstTheContract(unittest.TestCase):
    F = CONTRACT["function"]

    def test_each_function_runs_as_the_contract_says(self) -> None:
        binaries = {"Function": self.F["remediator_binary"], "DetectorFunction": self.F["detector_binary"]}
        fns = {n: r for n, r in HUB["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
        self.assertEqual(sorted(fns), sorted(binaries))
        for name, fn in fns.items():
            with self.subTest(function=name):
                p = fn["Properties"]
                self.assertEqual(p["Runtime"], self.F["runtime"])
                self.assertEqual(p["Architectures"], [self.F["architecture"]])
                self.assertEqual(p["Handler"], self.F["handler"])
                self.assertEqual(p["LoggingConfig"]["LogFormat"], self.F["log_format"])
                self.assertEqual(fn["Metadata"]["BuildProperties"], {"Binary": binaries[name]})
                self.assertEqual((p["MemorySize"], p["Timeout"]), ({"Ref": "MemorySize"}, {"Ref": "FunctionTimeout"}))

    def test_each_function_is_deployed_with_the_contracts_variables(self) -> None:
        env = self.F["environment"]
        for name, declared in (("Function", env["remediator"]), ("DetectorFunction", env["detector"])):
            with self.subTest(function=name):
                variables = HUB["Resources"][name]["Properties"]["Environment"]["Variables"]
                self.assertEqual(list(variables), declared)
                # Set only when given: the parameter's value, else no variable at all.
                optional = [k for k, v in variables.items()
                            if isinstance(v, dict) and "Fn::If" in v and v["Fn::If"][2] == {"Ref": "AWS::NoValue"}]
                self.assertEqual(optional, env["when_given"])

    def test_the_parameters_default_to_the_contracts(self) -> None:
        params = HUB["Parameters"]
        self.assertEqual(params["MemorySize"]["Default"], self.F["memory_mb"])
        self.assertEqual(params["FunctionTimeout"]["Default"], self.F["timeout_seconds"])
        self.assertEqual(params["LogRetentionDays"]["Default"], self.F["log_retention_days"])
        self.assertEqual(params["LogLevel"]["Default"], self.F["log_level"])
        self.assertEqual(params["MaxRetryAttempts"]["Default"], self.F["max_retry_attempts"])
        self.assertEqual(params["MaxEventAgeSeconds"]["Default"], self.F["max_event_age_seconds"])

    def test_each_function_logs_to_the_contracts_group(self) -> None:
        for fn, group, key in (("Function", "LogGroup", "remediator_log_group"), ("DetectorFunction", "DetectorLogGroup", "detector_log_group")):
            with self.subTest(function=fn):
                self.assertEqual(HUB["Resources"][fn]["Properties"]["LoggingConfig"]["LogGroup"], {"Ref": group})
                self.assertEqual(HUB["Resources"][group]["Properties"], {"LogGroupName": {"Fn::Sub": self.F[key]}, "RetentionInDays": {"Ref": "LogRetentionDays"}})

    def test_each_function_gives_up_on_events_into_the_stacks_queue(self) -> None:
        for name in ("Function", "DetectorFunction"):
            with self.subTest(function=name):
                p = HUB["Resources"][name]["Properties"]
                self.assertEqual(p["EventInvokeConfig"], {
                    "MaximumRetryAttempts": {"Ref": "MaxRetryAttempts"},
                    "MaximumEventAgeInSeconds": {"Ref": "MaxEventAgeSeconds"},
                    "DestinationConfig": {"OnFailure": {"Type": "SQS", "Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}},
                })
                logging = {k: v for k, v in p["LoggingConfig"].items() if k != "LogGroup"}
                self.assertEqual(logging, {"LogFormat": self.F["log_format"], "ApplicationLogLevel": {"Ref": "LogLevel"}, "SystemLogLevel": "INFO"})


class SamAgainstTheContract(unittest.TestCase):
    maxDiff = None

    def test_every_stack_setting_is_a_parameter_that_sets_its_variable(self) -> None:
        envs = function_environments()
        params = HUB["Parameters"]
        for s in CONTRACT["settings"]:
            name = s["sam_parameter"]
            if not name:
                continue
            with self.subTest(setting=s["variable"]):
                self.assertIn(name, params, f"{s['variable']}: SAM parameter {name} is missing")
                setting = {fn: env[s["variable"]] for fn, env in envs.items() if s["variable"] in env}
                self.assertTrue(setting, f"{s['variable']} is in no function's environment")
                self.assertTrue(
                    any(refers_to(v, name) for v in setting.values()),
                    f"{s['variable']} is not set from the parameter {name}: {setting}",
                )
                for fn, value in setting.items():
                    self.assertTrue(refers_to(value, name), f"{fn}: {s['variable']} is not set from {name}: {value}")

    def test_no_parameter_accepts_what_the_function_refuses(self) -> None:
        params = HUB["Parameters"]
        checked = 0
        for s in CONTRACT["settings"]:
            name = s["sam_parameter"]
            if not name:
                continue
            param = params[name]
            accepted = set(s["accepts"])
            if param.get("Type") == "CommaDelimitedList":
                # Joined with commas into the variable: judge the whole list's text.
                pass
            for probe in CONTRACT["probes"]:
                if sam_accepts(param, probe):
                    checked += 1
                    with self.subTest(parameter=name, value=probe):
                        self.assertIn(
                            probe,
                            accepted,
                            f"{name} accepts {probe!r}, which {s['variable']} refuses: the stack would deploy and the function fail at start-up",
                        )
        self.assertGreater(checked, 50, "the probes reached the parameters")

    def test_the_alarms_watch_metrics_the_function_publishes(self) -> None:
        published = set(CONTRACT["metrics"])
        watched: set[str] = set()
        for r in HUB["Resources"].values():
            if r["Type"] != "AWS::CloudWatch::Alarm":
                continue
            props = r["Properties"]
            if props.get("Namespace") == {"Ref": "MetricsNamespace"}:
                watched.add(props["MetricName"])
            for m in props.get("Metrics", []):
                stat = m.get("MetricStat", {}).get("Metric", {})
                if stat.get("Namespace") == {"Ref": "MetricsNamespace"}:
                    watched.add(stat["MetricName"])
        self.assertTrue(watched, "the hub's alarms watch the function's metrics")
        self.assertLessEqual(watched, published, f"alarms on metrics the function never publishes: {watched - published}")

    def test_the_alarms_are_the_contracts_both_ways(self) -> None:
        in_template = {n: r for n, r in HUB["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
        in_contract = {a["logical_id"]: a for a in CONTRACT["alarms"]}
        self.assertEqual(
            sorted(in_template), sorted(in_contract), "the template's alarms and the contract's (cargo xtask docs, xtask/src/alarms.rs)"
        )
        for name, alarm in in_contract.items():
            with self.subTest(alarm=name):
                self.assertEqual(in_template[name], sam_alarm(alarm))

    def test_each_contract_alarm_rests_on_what_the_template_has(self) -> None:
        params, conditions = HUB["Parameters"], HUB["Conditions"]
        for alarm in CONTRACT["alarms"]:
            with self.subTest(alarm=alarm["logical_id"]):
                # The runbook page the description names exists.
                self.assertTrue(alarm["description"].endswith(f" Runbook: {alarm['runbook']}"))
                self.assertTrue((ROOT / alarm["runbook"]).is_file(), f"{alarm['runbook']} does not exist")
                # Every setting it takes is a parameter of the template.
                knobs = [alarm["threshold"], alarm["period"], *alarm.get("math", {}).get("parameters", [])]
                knobs += [m["namespace"] for m in alarm.get("math", {}).get("metrics", [alarm.get("metric")])]
                for knob in knobs:
                    if isinstance(knob, dict):
                        knob = knob.get("sweep_interval_hours", knob)
                        self.assertIn(knob["sam_parameter"], params)
                # Its condition tests what the contract says.
                c = alarm["condition"]
                if c is not None:
                    test = {"Fn::Equals": [{"Ref": c["sam_parameter"]}, c.get("equals", c.get("not_equals"))]}
                    self.assertEqual(conditions[c["sam_condition"]], test if "equals" in c else {"Fn::Not": [test]})
                # The sweep interval's seconds are its hours.
                if isinstance(alarm["period"], dict):
                    knob = alarm["period"]["sweep_interval_hours"]
                    mapping = HUB["Mappings"]["SweepInterval"]
                    self.assertEqual(sorted(mapping, key=int), [str(v) for v in params[knob["sam_parameter"]]["AllowedValues"]])
                    for hours, row in mapping.items():
                        self.assertEqual(row["Seconds"], int(hours) * 3600)

    def test_every_parameter_defaults_to_the_functions_default(self) -> None:
        # A parameter whose setting declares a default (src/config/vars.rs) shows that default,
        # not "" (unset): an operator reads the stack's parameters, and both must behave the same.
        params = HUB["Parameters"]
        checked = 0
        for s in CONTRACT["settings"]:
            if s["sam_parameter"] and s["default"] is not None:
                with self.subTest(parameter=s["sam_parameter"]):
                    self.assertEqual(str(params[s["sam_parameter"]].get("Default")), s["default"])
                    checked += 1
        self.assertGreaterEqual(checked, 12)

    def test_the_dashboard_is_the_contracts(self) -> None:
        dashboards = {n: r for n, r in HUB["Resources"].items() if r["Type"] == "AWS::CloudWatch::Dashboard"}
        self.assertEqual(list(dashboards), ["Dashboard"], "one dashboard in the hub template")
        body = dashboards["Dashboard"]["Properties"]["DashboardBody"]
        self.assertEqual(list(body), ["Fn::Sub"], "the DashboardBody is one Fn::Sub string")
        widgets = json.loads(sub_with_dummies(body["Fn::Sub"]))["widgets"]
        in_template = []
        for w in widgets:
            props = w["properties"]
            with self.subTest(widget=props.get("title")):
                self.assertEqual(set(w), {"type", "x", "y", "width", "height", "properties"})
                self.assertLessEqual(set(props), {"title", "region", "view", "stat", "period", "metrics"}, "what the contract does not declare")
            in_template.append(
                {
                    "type": w["type"],
                    **{k: w[k] for k in ("x", "y", "width", "height")},
                    "title": props["title"],
                    "view": props["view"],
                    "region": props["region"],
                    "lines": dashboard_lines(props),
                }
            )
        in_contract = [contract_widget(w) for row in CONTRACT["dashboard"]["rows"] for w in row]
        self.assertGreater(sum(len(w["lines"]) for w in in_contract), 5, "the contract declares the dashboard's lines")
        self.assertEqual(in_template, in_contract, "the template's dashboard and the contract's (cargo xtask docs, xtask/src/dashboard.rs)")

    def test_defaults_are_the_functions(self) -> None:
        params = HUB["Parameters"]
        self.assertEqual(params["MetricsNamespace"]["Default"], CONTRACT["metrics_namespace"])
        self.assertEqual(params["ExcludeTag"]["Default"], CONTRACT["tag_keys"]["exclude"])
        self.assertEqual(params["BaselineTag"]["Default"], CONTRACT["tag_keys"]["baseline"])


if __name__ == "__main__":
    unittest.main()
