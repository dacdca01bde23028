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
