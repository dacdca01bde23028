"""The operator's loop end to end: the stacks' own alarms fire on real metric data and reach a subscriber.

The alarms and dashboards come from the synthesized templates (infra/.build/sam/*.cfn.json and
infra/cdk/cdk.out), are created on the local emulator for a test deployment with an SNS topic
and an SQS subscriber, and are driven by the real function under `cargo lambda watch`; see
alarm_harness.py for how the references are resolved and why the Period is 60 s. All
scenarios are driven at once and waited for once (about 5 minutes: LocalStack evaluates a
60 s alarm every 60 s and looks back 3 periods before it returns to OK).

Run (from the repository root, emulator started, templates synthesized):

    .venv/bin/python -m unittest discover -s infra/tests -p 'test_alarms.py' -v

The exposure scenario also follows a drift the function found to the operator: the drift event
it put on the templates' drift bus (their own event bus at the defaults, stood in for by a test
bus of the run), and the message the hubs' exposure notification rules (from the templates, on
that bus) made of it on the alarm topic.

Results: infra/.build/alarms/report.txt (each alarm's state changes and their times),
notifications.json (every notification the subscriber received: the alarms', then the rules'
messages) and guard-events.json (every event the function put on the bus).
"""

from __future__ import annotations

import json
import re
import sys
import unittest
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import alarm_harness as h  # noqa: E402

RUNBOOK = h.ROOT / "docs" / "src" / "runbook"
ALARMS_PAGE = h.ROOT / "docs" / "src" / "alarms.md"


class TemplateAlarmsTest(unittest.TestCase):
    """Offline: every alarm of the templates is accounted for and points to its runbook entry."""

    def test_every_alarm_in_the_templates_is_driven_or_listed_as_not_drivable(self) -> None:
        alarms = h.template_alarms(h.sources())
        tools = {a.source.tool for a in alarms}
        self.assertEqual(tools, {"sam", "cdk"}, "alarms are expected in the SAM and the CDK templates")
        for a in alarms:
            with self.subTest(alarm=a.where):
                self.assertFalse(a.key in h.DRIVEN and a.key in h.NOT_DRIVABLE, f"{a.key} is both driven and not drivable")
                self.assertTrue(
                    a.key in h.DRIVEN or a.key in h.NOT_DRIVABLE,
                    f"{a.where} ({a.key}) is neither driven (DRIVEN in alarm_harness.py: which scenario trips it) "
                    "nor listed in NOT_DRIVABLE with the reason",
                )
                if a.key in h.DRIVEN:
                    self.assertIn(h.DRIVEN[a.key], h.SCENARIOS)
                else:
                    self.assertGreaterEqual(len(h.NOT_DRIVABLE[a.key]), 20, "say why it cannot be driven")
                # LocalStack evaluates single-metric alarms only: metric math needs the harness's evaluation.
                if "Metrics" in a.props:
                    self.assertIn(a.key, h.STAND_IN_EVALUATION, f"{a.where} is metric math: add it to STAND_IN_EVALUATION with the reason")
                else:
                    self.assertNotIn(a.key, h.STAND_IN_EVALUATION, f"{a.where} is a single-metric alarm: LocalStack evaluates it itself")

    def test_alarms_of_one_scenario_only_are_driven_there_and_justified(self) -> None:
        for key, why in h.ONLY_IN.items():
            self.assertIn(key, h.DRIVEN)
            self.assertGreaterEqual(len(why), 20, "say why it exists in its own scenario only")

    def test_the_heartbeat_follows_the_sweep_interval(self) -> None:
        # Two schedule periods of SweepCompleted, missing data breaching, in every template.
        for a in h.template_alarms(h.sources()):
            if a.key != "SweepCompleted-heartbeat":
                continue
            with self.subTest(alarm=a.where):
                dep = h.Deployment(a.source, "s", "TEST/ns", "t", "f", {"name": "q", "url": "u", "arn": "a"})
                props = dep.resolve(a.props)
                rule = next(r for r in a.source.of_type("AWS::Events::Rule").values() if "ScheduleExpression" in (r.get("Properties") or {}))
                schedule = dep.resolve(rule["Properties"]["ScheduleExpression"])
                m = re.fullmatch(r"rate\((\d+) (hour|hours|day|days)\)", schedule)
                self.assertIsNotNone(m, schedule)
                assert m is not None
                seconds = int(m.group(1)) * (86400 if m.group(2).startswith("day") else 3600)
                self.assertEqual(int(props["Period"]), seconds, f"the alarm's period is the schedule's ({schedule})")
                self.assertEqual((int(props["EvaluationPeriods"]), int(props["DatapointsToAlarm"])), (2, 2))
                self.assertEqual((props["MetricName"], props["Statistic"], props["ComparisonOperator"], float(props["Threshold"])),
                                 ("SweepCompleted", "Sum", "LessThanThreshold", 1.0))
                self.assertEqual(props["TreatMissingData"], "breaching")

    def test_incidental_alarms_are_justified(self) -> None:
        for scenario, tolerated in h.INCIDENTAL.items():
            self.assertIn(scenario, h.SCENARIOS)
            for key, why in tolerated.items():
                self.assertNotEqual(h.DRIVEN.get(key), scenario, f"{key} is driven by {scenario}, not incidental there")
                self.assertGreaterEqual(len(why), 20, "say why it may fire there")

    def test_every_alarm_points_to_its_runbook_page_and_the_page_exists(self) -> None:
        for a in h.template_alarms(h.sources()):
            with self.subTest(alarm=a.where):
                desc = a.props.get("AlarmDescription", "")
                self.assertIsInstance(desc, str)
                m = re.search(r"Runbook: docs/src/runbook/([a-z0-9-]+)\.md$", desc)
                self.assertIsNotNone(m, f"{a.where}: AlarmDescription does not end with its runbook page: {desc!r}")
                assert m is not None
                # One page per alarm, named after it: the alarm's name after `<stack>-`, in lower case.
                self.assertEqual(m.group(1), a.key.lower(), f"{a.where}: the runbook page is named after the alarm")
                page = RUNBOOK / f"{m.group(1)}.md"
                self.assertTrue(page.is_file(), f"{a.where}: no runbook page {page.relative_to(h.ROOT)}")
                self.assertRegex(page.read_text(encoding="utf-8"), r"^# \S", f"{page}: a page starts with its title")

    def test_function_metric_alarms_watch_what_the_function_publishes(self) -> None:
        # The template's alarms and its function agree on the namespace (before the harness maps it).
        for a in h.template_alarms(h.sources()):
            dep = h.Deployment(a.source, "s", "TEST/ns", "t", "f", {"name": "q", "url": "u", "arn": "a"})
            plain = h.Deployment(a.source, "s", "TEST/ns", "t", "f", {})
            plain.sam_overrides = {}
            plain.deployed_namespace = None
            if a.props.get("MetricName") in h.FUNCTION_METRICS:
                with self.subTest(alarm=a.where):
                    ns = plain.resolve(a.props.get("Namespace"))
                    self.assertEqual(ns, dep.deployed_namespace, "the alarm watches another namespace than the function publishes to")
                    self.assertEqual(dep.alarm_request(a)["Namespace"], "TEST/ns")
            for m in a.props.get("Metrics", []):
                # The Lambda service's own metrics (AWS/Lambda) are not the function's.
                if "MetricStat" not in m or str(m["MetricStat"]["Metric"]["Namespace"]).startswith("AWS/"):
                    continue
                with self.subTest(alarm=a.where, series=m["Id"]):
                    ns = plain.resolve(m["MetricStat"]["Metric"]["Namespace"])
                    self.assertEqual(ns, dep.deployed_namespace, "the alarm watches another namespace than the function publishes to")
                    self.assertEqual(h.alarm_namespaces(dep.alarm_request(a)), {"TEST/ns"})


class AlarmsFireOnTheEmulatorTest(unittest.TestCase):
    harness: h.Run

    @classmethod
    def setUpClass(cls) -> None:
        problem = h.emulator_problem()
        if problem:
            raise AssertionError(
                f"the local AWS emulator is not reachable: {problem}. Start it with `make emulator` "
                "(or point AWS_ENDPOINT_URL at one)."
            )
        cls.harness = h.Run()
        cls.harness.execute()

    # -- the scenarios really happened
    def test_the_function_did_what_each_scenario_needs(self) -> None:
        sc = self.harness.scenarios
        spike = [o for i in sc["spike"].invocations for o in h._outcomes(i)]
        self.assertEqual(sum(o.get("action") == "remediated" for o in spike), self.harness.spike_replicas, spike)
        failed = sc["failed"].invocations
        self.assertEqual([i.ok for i in failed], [False], "the lockout baseline must fail the invocation")
        # The mirrored primary policy would lock the remediator out: refused, nothing written.
        self.assertEqual(failed[0].body.get("errorType"), "NonRetryable.KeyFailure", failed[0].body)
        self.assertIn("the baseline for this key is invalid, nothing was written", failed[0].body.get("errorMessage", ""))
        flap = [[o.get("action") for o in h._outcomes(i)] for i in sc["flap"].invocations]
        self.assertEqual(flap[0], ["remediated"])
        self.assertEqual(flap[1], ["skipped"])
        self.assertIn("flapping", h._outcomes(sc["flap"].invocations[1])[0].get("reason", ""))
        # The sweep work item of the account that cannot be entered was retried, then dead-lettered.
        member = sc["member"]
        self.assertGreaterEqual(member.sweep_receives, 1, "the sweep work item was never received")
        self.assertTrue(
            any(i.what.startswith("sweep work item") for i in member.invocations), "the function never got the SQS event"
        )
        published = {m["MetricName"] for m in self.harness.listed_metrics.get("member", [])}
        self.assertIn("AccountNotEntered", published, "the function did not publish AccountNotEntered (AssumeRole into the member account failed)")
        self.assertIn("AccountNotAllowed", published, "the function did not publish AccountNotAllowed (an event from an account outside MEMBER_ACCOUNTS)")
        # Dry-run: the replica opened to everyone is reported as a public drift and left as it is.
        (exposure,) = sc["exposure"].invocations
        self.assertTrue(exposure.ok, exposure.body)
        outcomes = h._outcomes(exposure)
        self.assertEqual([o.get("action") for o in outcomes], ["drift-detected"], outcomes)
        self.assertEqual(outcomes[0]["exposure"]["severity"], "public", outcomes[0])
        self.assertIn({"principal": "*", "actions": ["kms:Decrypt"], "when": None}, outcomes[0]["exposure"]["gains"])
        self.assertEqual(exposure.body.get("notifications"), {"published": 1}, exposure.body)
        self.assertIn(
            {"MetricName": "ExposureDrift", "Dimensions": [{"Name": "Severity", "Value": "public"}]},
            [{"MetricName": m["MetricName"], "Dimensions": m.get("Dimensions", [])} for m in self.harness.listed_metrics["exposure"]],
            "the function did not publish ExposureDrift{Severity=public}",
        )
        # The heartbeat's sweeps ran through (a Region without keys) and published SweepCompleted.
        sweeps = sc["heartbeat"].invocations
        self.assertGreaterEqual(len(sweeps), 2, "the heartbeat scenario swept at least twice")
        self.assertTrue(all(i.ok for i in sweeps), [i.body for i in sweeps if not i.ok])
        self.assertIn(("SweepCompleted", ()), {(m["MetricName"], tuple(m.get("Dimensions", []))) for m in self.harness.listed_metrics["heartbeat"]})
        # The guardrails refused the mirrored public primary (nothing written), wrote the partner's share.
        public, partner, exempt = sc["guardrail"].key_ids
        refused, shared, tagged = sc["guardrail"].invocations
        self.assertFalse(refused.ok, refused.body)
        self.assertEqual(refused.body.get("errorType"), "NonRetryable.KeyFailure", refused.body)
        self.assertIn("refused by the guardrails, nothing was written", refused.body.get("errorMessage", ""))
        (written,) = h._outcomes(shared)
        # A trusted partner's grant is written and is `access`: the guardrails and the severity are one
        # set of rules, so WriteExposure{cross-account} never comes from the function (stood in).
        self.assertEqual((written.get("action"), written["write_exposure"]["severity"]), ("remediated", "access"), written)
        self.assertTrue(tagged.ok, tagged.body)
        guardrail_metrics = {(m["MetricName"], tuple((d["Name"], d["Value"]) for d in m.get("Dimensions", [])))
                             for m in self.harness.listed_metrics["guardrail"]}
        self.assertIn(("GuardrailRefused", (("Severity", "public"),)), guardrail_metrics)
        self.assertIn(("ExemptionGranted", ()), guardrail_metrics)
        # The throttled event ran through once Lambda let it (the throttles are stood in).
        (throttled,) = sc["throttled"].invocations
        self.assertEqual([o.get("action") for o in h._outcomes(throttled)], ["remediated"], throttled.body)
        # The detector, Security Hub and AWS Config unreachable: the finding was not imported (a
        # failure that may pass: the invocation fails retryably, so Lambda retries it), the Config
        # answer not put (that invocation fails); nothing about the key was written.
        notified, config = sc["findings"].invocations
        self.assertFalse(notified.ok, notified.body)
        self.assertEqual(notified.body.get("errorType"), "Retryable.FindingsNotImported", notified.body)
        self.assertFalse(config.ok, config.body)
        published = {m["MetricName"] for m in self.harness.listed_metrics["findings"]}
        self.assertLessEqual({"FindingsNotImported", "EvaluationsNotPut"}, published)
        # No dimensionless total of ExposureDrift, and never a Region dimension.
        for scenario, metrics in self.harness.listed_metrics.items():
            for m in metrics:
                if m["MetricName"] == "ExposureDrift":
                    with self.subTest(scenario=scenario, metric=m):
                        self.assertEqual([d["Name"] for d in m.get("Dimensions", [])], ["Severity"])

    # -- alarms
    def test_each_alarm_fires_in_its_scenario_and_returns_to_ok(self) -> None:
        fired = [ta for ta in self.harness.test_alarms if ta.expect_alarm]
        self.assertEqual(len(fired), 2 * len(h.DRIVEN), "one driven alarm per template and alarm")
        for ta in fired:
            with self.subTest(alarm=ta.name):
                states = [s for s, _ in ta.history]
                t_alarm = ta.first("ALARM")
                self.assertIsNotNone(t_alarm, f"{ta.name} never went to ALARM: {states}")
                assert t_alarm is not None
                self.assertIsNotNone(ta.first("OK", after=t_alarm), f"{ta.name} did not return to OK: {states}")

    def test_the_heartbeat_fired_on_missing_data_and_stayed_ok_while_sweeps_completed(self) -> None:
        hb = self.harness.scenarios["heartbeat"]
        mine = [ta for ta in self.harness.test_alarms if ta.alarm.key == "SweepCompleted-heartbeat"]
        self.assertEqual({ta.alarm.source.tool for ta in mine}, {"sam", "cdk"})
        for ta in mine:
            with self.subTest(alarm=ta.name):
                self.assertEqual(ta.scenario, "heartbeat", "created in its own scenario only")
                # Before any sweep: no datapoint at all, the missing ones treated as breaching.
                self.assertRegex(hb.alarm_reasons.get(ta.name, ""), r"no datapoints were received.*\[Breaching\]")
                t_alarm = ta.first("ALARM")
                assert t_alarm is not None and hb.first_data_at is not None
                self.assertLess(t_alarm, hb.first_data_at, "ALARM before the first sweep")
                t_ok = ta.first("OK", after=t_alarm)
                assert t_ok is not None
                after = [s for s, t in ta.history if t > t_ok]
                self.assertNotIn("ALARM", after, f"back to ALARM while sweeps completed: {ta.history}")

    def test_no_alarm_fires_outside_its_scenario(self) -> None:
        for ta in self.harness.test_alarms:
            if ta.expect_alarm or ta.alarm.key in h.INCIDENTAL.get(ta.scenario, {}):
                continue
            with self.subTest(alarm=ta.name):
                states = [s for s, _ in ta.history]
                self.assertNotIn("ALARM", states)
                self.assertIn("OK", states, f"{ta.name} was never evaluated: {states}")

    def test_every_state_change_reached_the_subscriber_naming_the_alarm_and_metric(self) -> None:
        by_name: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for n in self.harness.notifications:
            by_name.setdefault((n["alarm"].get("AlarmName", ""), n["alarm"].get("NewStateValue", "")), []).append(n)
        for ta in self.harness.test_alarms:
            if not ta.expect_alarm:
                continue
            for state in ("ALARM", "OK"):
                with self.subTest(alarm=ta.name, state=state):
                    got = by_name.get((ta.name, state), [])
                    self.assertTrue(got, f"no {state} notification for {ta.name} in the subscriber queue")
                    alarm, envelope = got[0]["alarm"], got[0]["envelope"]
                    self.assertEqual(envelope.get("TopicArn"), self.harness.topic_arn)
                    if not ta.stand_in:
                        self.assertEqual(alarm["Trigger"]["MetricName"], ta.request["MetricName"])
                        self.assertEqual(alarm["Trigger"]["Namespace"], ta.request["Namespace"])
                    # (A metric-math alarm: LocalStack renders only single-metric Triggers, where AWS
                    # lists the alarm's Metrics; the name and description below identify it.)
                    self.assertEqual(alarm.get("AlarmDescription"), ta.request["AlarmDescription"])
                    self.assertIn(ta.name, envelope.get("Subject", ""))

    def test_metric_math_alarms_were_evaluated_on_the_published_data(self) -> None:
        for ta in self.harness.test_alarms:
            if not ta.stand_in:
                continue
            with self.subTest(alarm=ta.name):
                self.assertTrue(ta.stand_in_evaluations, f"{ta.name} was never evaluated")
                self.assertFalse([e for e in ta.stand_in_evaluations if "error" in e], ta.stand_in_evaluations)
                alarmed = [e for e in ta.stand_in_evaluations if e["state"] == "ALARM"]
                if ta.expect_alarm:
                    self.assertTrue(alarmed, ta.stand_in_evaluations)
                    # One public drift, one refused write, one cross-account write: a sum of 1; the
                    # throttled event's age: THROTTLED_AGE_FRACTION of MaximumEventAgeInSeconds.
                    expected = h.THROTTLED_AGE_FRACTION if ta.alarm.key == "AsyncEventAge" else 1.0
                    self.assertIn(expected, alarmed[0]["datapoints"])
                else:
                    self.assertFalse(alarmed, ta.stand_in_evaluations)

    # -- the exposure notification rule
    def test_the_drift_event_and_the_readable_message_reached_the_operator(self) -> None:
        key_id = self.harness.scenarios["exposure"].key_ids[0]
        key_arn = f"arn:aws:kms:{h.REPLICA_REGION}:{h.ACCOUNT}:key/{key_id}"
        (outcome,) = h._outcomes(self.harness.scenarios["exposure"].invocations[0])
        # The templates publish drift events to the stack's own bus (DriftEventBus / driftEventBus
        # dedicated, their default): the run's test bus stood in for it, and the function published there.
        self.assertTrue(self.harness.drift_bus, "the templates' drift bus is their own event bus")
        self.assertEqual(self.harness.event_bus, self.harness.drift_bus["name"])
        # Another run's sweep of the same Region may still publish about this run's keys later (on its
        # own bus or the default one): only this run's keys, while it drove them, count.
        own = {
            f"arn:aws:kms:{h.REPLICA_REGION}:{h.ACCOUNT}:key/{k}" for sc in self.harness.scenarios.values() for k in sc.key_ids
        }
        guard_events = h.own_events(self.harness)
        events = [e for e in guard_events if e.get("resources") == [key_arn]]
        self.assertEqual(len(events), 1, self.harness.guard_events)
        ev = events[0]
        self.assertEqual((ev["source"], ev["detail-type"]), ("kms-replica-guard", "Replica Key Policy Drift Detected"))
        self.assertEqual((ev["account"], ev["region"]), (h.ACCOUNT, h.REGION), "the hub's drift bus in the function's Region")
        self.assertEqual(ev["detail"], outcome, "the event's detail is the outcome")
        self.assertEqual(ev["detail"]["actor"]["arn"], "arn:aws:sts::111122223333:assumed-role/Admin/alice")
        # Every other scenario's drifts were published too (narrowing, admin): the rules pass none of them.
        self.assertTrue(any(e.get("resources") != [key_arn] for e in guard_events), "only the exposure drift was published")
        tools = sorted(src.tool for src, _ in self.harness.exposure_rules)
        self.assertEqual(tools, ["cdk"] * 3 + ["sam"] * 3, "the exposure, write refused and exemption rules of each hub template")
        texts = sorted(t for t in h.own_messages(self.harness) if any(arn in t for arn in own) and " drift on " in t)
        self.assertEqual(len(texts), 2, f"one message per template's rule, for the public drift only: {texts}")
        for text in texts:
            self.assertEqual(
                text,
                f"kms-replica-guard: public drift on {key_arn} ({h.REPLICA_REGION}, account {h.ACCOUNT}): drift-detected. "
                f"Caused by arn:aws:sts::111122223333:assumed-role/Admin/alice from 203.0.113.24 at 2026-11-05T16:20:03Z "
                f"(CloudTrail event 93e6c1a8-5f2d-4b07-8c4e-1a7d3b9f5e62). Runbook: docs/src/runbook/exposuredrift.md",
            )
        for m in self.harness.rule_messages:
            self.assertEqual(m.get("TopicArn"), self.harness.topic_arn)

    def test_the_refused_write_and_the_exemption_reached_the_operator_as_messages(self) -> None:
        guardrail = self.harness.scenarios["guardrail"]
        public, partner, exempt = (f"arn:aws:kms:{h.REPLICA_REGION}:{h.ACCOUNT}:key/{k}" for k in guardrail.key_ids)
        own = [e for e in h.own_events(self.harness) if e["resources"][0] in (public, partner, exempt)]
        kinds = sorted((e["detail-type"], e["resources"][0]) for e in own)
        self.assertIn(("Replica Key Policy Write Refused", public), kinds)
        self.assertIn(("Replica Key Exemption Granted", exempt), kinds)
        refused = next(e for e in own if e["detail-type"] == "Replica Key Policy Write Refused")
        self.assertEqual(refused["account"], h.ACCOUNT)
        self.assertEqual([b["severity"] for b in refused["detail"]["guardrail"]], ["public"])
        texts = h.own_messages(self.harness)
        refused_texts = [t for t in texts if t.startswith(f"kms-replica-guard: write refused on {public} ")]
        exempt_texts = [t for t in texts if t.startswith(f"kms-replica-guard: exemption granted on {exempt}: ")]
        # One per hub template's rule (SAM and CDK), and nothing else about these keys.
        self.assertEqual(len(refused_texts), 2, texts)
        self.assertEqual(len(exempt_texts), 2, texts)
        self.assertEqual(len(set(refused_texts)), 1, "SAM and CDK render the same message")
        self.assertEqual(len(set(exempt_texts)), 1, "SAM and CDK render the same message")
        # The key, the reason (naming the breaching statement) and the trigger as the event has it
        # (its actor is empty when the refusal came from mirroring the primary).
        actor = refused["detail"].get("actor") or {}
        self.assertEqual(
            refused_texts[0],
            f"kms-replica-guard: write refused on {public} ({h.REPLICA_REGION}, account {h.ACCOUNT}): {refused['detail']['reason']} "
            f"Triggered by {actor.get('arn', '')} from {actor.get('source_ip_address', '')} at {actor.get('event_time', '')} "
            f"(CloudTrail event {actor.get('event_id', '')}). Runbook: docs/src/runbook/guardrailrefused.md",
        )
        self.assertIn('statement "ShareWithEveryone": * gains kms:Decrypt', refused_texts[0])
        self.assertIn(f"tag kms-replica-guard:exclude={guardrail.exemption['value']} set by arn:aws:sts::111122223333:assumed-role/Admin/alice "
                      "from 203.0.113.24 at 2026-11-08T14:02:11Z (CloudTrail event c3f7a9e2-4d1b-4e85-8a6c-2b9d5f0e7a14)", exempt_texts[0])
        self.assertTrue(exempt_texts[0].endswith("Runbook: docs/src/runbook/exemption-granted.md"), exempt_texts[0])
        self.assertFalse([t for t in texts if partner in t], "a written share is news on WriteExposure, not on these rules")

    # -- dashboard
    def test_the_dashboards_are_accepted_and_name_metrics_the_function_published(self) -> None:
        self.assertEqual({r["deployment"].source.tool for r in self.harness.dashboard_results}, {"sam", "cdk"})
        published = set()
        for sc in self.harness.scenarios.values():
            for m in self.harness.listed_metrics[sc.name]:
                ns = m["Namespace"].replace(sc.namespace, "<ns>")
                published.add((ns, m["MetricName"], frozenset(d["Name"] for d in m.get("Dimensions", []))))
        for name in h.FUNCTION_METRICS:
            self.assertIn(("<ns>", name, frozenset()), published, "the fleet total")
            self.assertIn(("<ns>", name, frozenset({"Region"})), published, "the per-Region datum")
        for r in self.harness.dashboard_results:
            with self.subTest(dashboard=r["where"]):
                self.assertEqual(r["validation"], [], "PutDashboard validation messages")
                self.assertTrue(r["read_back_equal"], "GetDashboard returned another body")
                self.assertTrue(r["metrics"])
                ns = r["deployment"].namespace
                for m_ns, m_name, dims in r["metrics"]:
                    self.assertEqual(m_ns, ns)
                    self.assertIn(("<ns>", m_name, dims), published, f"the dashboard shows {m_name} {set(dims)}, never published")

    # -- the book's Alarms chapter
    def test_the_alarms_chapter_shows_a_notification_like_the_real_one(self) -> None:
        text = ALARMS_PAGE.read_text(encoding="utf-8")
        m = re.search(r"\A(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
        assert m is not None
        blocks = re.findall(r"```json\n(.*?)```", m.group(1), flags=re.S)
        self.assertGreaterEqual(len(blocks), 2, "the Alarms section shows the alarm message and its SNS envelope (```json)")
        message, envelope = json.loads(blocks[0]), json.loads(blocks[1])
        # A single-metric alarm's notification (LocalStack's Trigger of a metric-math alarm lacks its Metrics).
        real = next(
            n for n in self.harness.notifications
            if n["alarm"].get("NewStateValue") == "ALARM" and n["alarm"].get("Trigger", {}).get("MetricName")
        )
        self.assertEqual(sorted(message), sorted(real["alarm"]), "the alarm message fields")
        self.assertEqual(sorted(message["Trigger"]), sorted(real["alarm"]["Trigger"]), "the Trigger fields")
        self.assertEqual(sorted(envelope), sorted(real["envelope"]), "the SNS envelope fields")
        self.assertEqual(message["NewStateValue"], "ALARM")
        self.assertRegex(message["AlarmDescription"], r"Runbook: docs/src/runbook/[a-z-]+\.md$")


if __name__ == "__main__":
    unittest.main(verbosity=2)
