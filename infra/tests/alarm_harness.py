"""The stacks' own alarms, deployed for a test on the local emulator and driven by the real function.

Why Python: the other infra checks (infra/tests) are Python unittest on boto3 and read the
templates with infra/scripts/cfn_yaml.py; the harness reads the same synthesized templates,
needs no Rust SDK code for CloudWatch/SNS/SQS that xtask does not have, and runs as one more
check of infra/scripts/infra-test.sh. The function itself is run by xtask's runner, the one the
demo and the end-to-end run use: `cargo xtask serve` (`cargo build --bin bootstrap --bin
detector`, dev profile, then `cargo lambda watch` from .venv/bin), invoked over
http://127.0.0.1:PORT/2015-03-31/functions/bootstrap/invocations.

What it does (`Run.execute`):

1. Takes every AWS::CloudWatch::Alarm and AWS::CloudWatch::Dashboard from the synthesized
   templates themselves: the SAM templates as translated by infra/scripts/sam_to_cfn.py
   (infra/.build/sam/*.cfn.json) and the CDK synth output (infra/cdk/cdk.out/*.template.json).
2. Resolves their references for one test deployment per (scenario, template): the stack
   name, the metrics namespace (SAM: the MetricsNamespace parameter; CDK: the value the
   stack was synthesized with, which must equal its function's METRICS_NAMESPACE, mapped to
   the test namespace), the alarm topic (a test SNS topic with an SQS queue subscribed), the
   function (its test name) and the on-failure queue (a test queue per scenario). Thresholds
   and TreatMissingData stay as deployed (parameter defaults / synthesized values). Only the
   Period is changed: LocalStack evaluates an alarm every Period x EvaluationPeriods seconds
   and looks back (EvaluationPeriods + 2) periods, so the deployed 300 s would take 5-15 min
   per transition; TEST_PERIOD = 60 s is the shortest period for the function's
   standard-resolution metrics and for the SQS metrics LocalStack publishes every 60 s.
3. Drives each scenario with the real function (enforce mode, one `cargo xtask serve` per
   scenario, each with its own METRICS_NAMESPACE), all at once, then waits once:
   - spike: more drifted replicas than the spike threshold, one ReplicateKey event each;
   - failed: BASELINE_SOURCE=primary and a primary whose policy would lock the remediator
     out: the mirrored baseline is refused (AutoFixFailed), the invocation fails; its error
     goes to the scenario's DLQ as a Lambda on-failure record (AWS/SQS metrics published by
     LocalStack itself), and the Lambda service's Errors datum is stood in for (below);
   - flap: FLAP_MAX=1, a replica fixed, the drift put back, a second event: FlapSuppressed;
   - member: organisation mode (MEMBER_ROLE_NAME, MEMBER_ACCOUNTS=MEMBER_ACCOUNT) with STS at a
     closed loopback port, so that every AssumeRole fails: a PutKeyPolicy event from
     MEMBER_ACCOUNT (AccountNotEntered), one from OTHER_ACCOUNT (AccountNotAllowed), and a sweep
     work item for MEMBER_ACCOUNT on a real emulator queue with the template's redrive policy to
     the scenario's sweep DLQ: the harness stands in for the SQS event source (receive, invoke
     with an SQS event, delete what the function did not list in batchItemFailures) until SQS
     itself moves the item to the sweep DLQ after maxReceiveCount receives;
   - exposure: dry-run (REMEDIATION_MODE=dry-run), a replica whose policy someone opened to
     `*` (kms:Decrypt without a condition) and the PutKeyPolicy event: the function reports the
     drift, writes nothing and publishes ExposureDrift{Severity=public} = 1, and puts the
     drift on the drift bus (EVENT_BUS as deployed: the stack's own bus at the templates'
     defaults, DriftEventBus / driftEventBus dedicated; a test bus of the run stands in for it).
   - guardrail: BASELINE_SOURCE=primary, TRUSTED_ACCOUNTS=PARTNER_ACCOUNT: a primary opened to `*`
     is mirrored and refused (GuardrailRefused{Severity=public}, a Write Refused event), a primary
     shared with the trusted partner is mirrored and written (write_exposure `access`; the
     WriteExposure{cross-account} datum is stood in, STAND_IN: the guardrails refuse such writes), and
     the exclude tag set on a third replica gives an Exemption Granted event;
   - throttled: a drifted replica's event, which the Lambda service (stood in) throttled before
     it ran: Throttles and AsyncEventAge (below);
   - findings: the detector (the `detector` binary; the `bootstrap` that served findings before it,
     in a tree without one) with SECURITY_HUB=on and Security Hub and AWS Config at a closed
     loopback port: the guard's drift event about a replica (`bootstrap`: the KMS event) reaches it
     and the replica's finding is not imported (FindingsNotImported); an AWS Config rule
     invocation for it is not answered (EvaluationsNotPut, and the invocation fails, counted in the
     stood-in Errors of the detector, which the remediator's FunctionErrors does not watch).
   AWS/Lambda data (Errors, Throttles, AsyncEventsDropped, AsyncEventAge) come from the Lambda
   service, which does not run the function here: the harness publishes them (STAND_IN says how
   each value is obtained), in every scenario, so that the alarms are seen OK on ordinary values.
   The hubs' notification rules on the guard's events (exposure, write refused, exemption;
   source kms-replica-guard; pattern and InputTransformer
   from the templates, the target resolved to the test topic) are created on that bus (the one
   their EventBusName names: the run's test bus for the templates' drift bus, or default)
   for the run, with a capture rule that copies every event of the function to a queue: the
   drift events the function really published and the messages the rules made of them are
   both recorded.
4. Polls the alarms' states (transitions and their times), purges a DLQ once its alarm is in
   ALARM, waits for every fired alarm to return to OK, reads the notifications from the
   queue, PutDashboard's each resolved dashboard and reads the published metrics back with
   ListMetrics. LocalStack evaluates single-metric alarms only; a metric-math alarm
   (ExposureDrift, GuardrailRefused, WriteExposure, AsyncEventAge) is evaluated by the harness instead, on LocalStack's schedule and with its
   rules, from the data the function published (see STAND_IN_EVALUATION), and its state set
   with SetAlarmState: the actions, the SNS notification and the subscriber are LocalStack's.

Alarms join automatically: every alarm in the templates is either in DRIVEN (which scenario
must trip it) or in NOT_DRIVABLE (with the reason); the test fails for any other.

    .venv/bin/python infra/tests/alarm_harness.py demo    # make demo-alarms
"""

from __future__ import annotations

import ast
import datetime
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import boto3

ROOT = Path(__file__).resolve().parents[2]
SAM_BUILD = ROOT / "infra" / ".build" / "sam"
CDK_OUT = ROOT / "infra" / "cdk" / "cdk.out"
OUT_DIR = ROOT / "infra" / ".build" / "alarms"
EVENTS = ROOT / "events"
BASELINE = ROOT / "baselines" / "example.json"
ENDPOINT = (os.environ.get("AWS_ENDPOINT_URL") or f"http://127.0.0.1:{os.environ.get('LOCALSTACK_PORT') or 4566}").rstrip("/")
ACCOUNT = "111122223333"
REGION = "us-east-1"
# A Region no other test sweeps: this harness's replicas never show up in their sweeps.
REPLICA_REGION = "ca-central-1"
SAMPLE_KEY_ID = "mrk-1234abcd12ab34cd56ef1234567890ab"
REMEDIATOR_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/kms-replica-guard-remediator"
TEST_PERIOD = 60
POLL_SECONDS = 2.0
WATCH_PORT = int(os.environ.get("ALARMS_WATCH_PORT", "9050"))
# The metrics the function publishes, each without dimensions and with Region.
FUNCTION_METRICS = ("AutoFixApplied", "DriftDetected", "AutoFixFailed", "FlapSuppressed")
# Organisation mode: the member account the function may enter (but cannot: STS is unreachable),
# and an account outside MEMBER_ACCOUNTS.
MEMBER_ACCOUNT = "444455556666"
OTHER_ACCOUNT = "555566667777"
MEMBER_ROLE_NAME = "kms-replica-guard-member"

# The heartbeat scenario's sweeps cover a Region where no test creates keys: they complete (and
# publish SweepCompleted) without touching the other scenarios' keys or publishing their drifts.
HEARTBEAT_REGION = "eu-south-1"
# How often the heartbeat scenario runs a scheduled sweep while the run waits (the alarm looks at
# 60 s windows there).
HEARTBEAT_SWEEP_EVERY = 45.0

# The guardrail scenario's trusted partner: a mirrored primary may grant it access (WriteExposure).
PARTNER_ACCOUNT = "777788889999"
EXCLUDE_TAG = "kms-replica-guard:exclude"
# The throttled scenario: how many times the Lambda service (stood in) throttled its event before
# it ran, and how far the event had aged by then, as a share of the stack's MaximumEventAgeInSeconds.
THROTTLED_ATTEMPTS = 3
THROTTLED_AGE_FRACTION = 0.75
# The findings scenario: a Region of its own (no other scenario's keys in its sweep), and the binary
# that serves findings and AWS Config answers.
FINDINGS_REGION = "ap-northeast-3"
DETECTOR_BINARY = "detector" if (Path(__file__).resolve().parents[2] / "src" / "bin" / "detector.rs").is_file() else "bootstrap"

SCENARIOS = ("spike", "failed", "flap", "member", "exposure", "heartbeat", "guardrail", "throttled", "findings")
# Which scenario must trip each alarm (by its name without the stack prefix). In every other
# scenario the alarm must never leave OK.
DRIVEN = {
    "AutoFixApplied-spike": "spike",
    "AutoFixFailed": "failed",
    "FlapSuppressed": "flap",
    "FunctionErrors": "failed",
    "DLQ-not-empty": "failed",
    "AsyncEventsDropped": "failed",
    "AccountNotEntered": "member",
    "AccountNotAllowed": "member",
    "GuardrailRefused": "guardrail",
    "WriteExposure": "guardrail",
    "Throttles": "throttled",
    "AsyncEventAge": "throttled",
    "sweep-DLQ-not-empty": "member",
    "ExposureDrift": "exposure",
    "SweepCompleted-heartbeat": "heartbeat",
    # Only in a stack deployed in enforce mode (SAM: Condition Enforcing; the CDK app is synthesized
    # with remediationMode=enforce by make infra-test); the exposure scenario runs in dry-run.
    "EnforceMode-dry-run": "exposure",
    # The detector's (SAM: Conditions SecurityHubOn and HasConfigRule; the CDK app is synthesized
    # with securityHub=on and configRule=account by make infra-test).
    "FindingsNotImported": "findings",
    "EvaluationsNotPut": "findings",
}
# Alarms created in their own scenario only, with the reason. The heartbeat is breaching on missing
# data by design: in a scenario where no sweep runs it must be in ALARM, which is what its own
# scenario proves first (before any sweep), then that sweeps completing bring and keep it OK.
ONLY_IN = {
    "SweepCompleted-heartbeat": "missing data is breaching: every scenario without sweeps would (rightly) "
    "keep it in ALARM; its own scenario shows both sides (no sweep yet: ALARM; sweeps completing: OK)",
}
# Alarms that may also fire in a scenario, from the same cause as the scenario's own alarm (not
# required: that is the function's choice), with the reason. Any other alarm must stay OK.
INCIDENTAL: dict[str, dict[str, str]] = {
    "member": {
        "AutoFixFailed": "a key in an account the hub could not enter was not checked: the function may count it as a failed fix too",
        "FunctionErrors": "an event whose account could not be entered may fail the invocation (retryable), so that Lambda retries it",
    },
    "guardrail": {
        "AutoFixFailed": "a write the guardrails refused is a key the guard could not fix: counted as a failed fix too",
        "FunctionErrors": "a refused write fails its key NonRetryable, and so the invocation (the stood-in Errors datum counts it)",
    },
}
# Alarms whose metric comes from the Lambda service, which does not run the function here (it
# runs under cargo lambda watch): the harness publishes the datum the service would publish,
# with the value the real invocations give (Errors = the invocations that returned an error).
STAND_IN = {
    "FunctionErrors": "AWS/Lambda Errors is published by the Lambda service, which does not run the "
    "function here (cargo lambda watch does): the harness publishes Errors = the number of the "
    "scenario's invocations that really returned an error, with the FunctionName the alarm names "
    "(in the findings scenario the detector's name: the remediator's alarm does not watch it)",
    "AsyncEventsDropped": "AWS/Lambda AsyncEventsDropped: the harness publishes the number of on-failure "
    "records it put in the scenario's DLQ for invocations that really failed (the failed scenario: 1), "
    "as Lambda counts an event it gives up on after its retries; 0 in every other scenario",
    "Throttles": "AWS/Lambda Throttles: cargo lambda watch never throttles, so the harness plays the Lambda "
    "service of a function without free concurrency: in the throttled scenario it publishes "
    f"Throttles = {THROTTLED_ATTEMPTS} (refused attempts) before it invokes the real function with the event; 0 elsewhere",
    "WriteExposure": "WriteExposure{Severity=public|cross-account} cannot come from the function: its guardrails "
    "refuse exactly the writes that would have that severity (one set of rules; the guardrail scenario shows "
    "the refusal, and that a trusted partner's grant is written as `access`). The alarm is the defence in "
    "depth for a failed guardrail, so the harness publishes WriteExposure{Severity=cross-account} = 1 in the "
    "guardrail scenario's namespace, as the function would after such a write",
    "AsyncEventAge": "AWS/Lambda AsyncEventAge (ms, Maximum): no event waits under cargo lambda watch, so the "
    "value is chosen, not measured: in the throttled scenario the age of an event that waited "
    f"{THROTTLED_AGE_FRACTION:g} of the stack's MaximumEventAgeInSeconds before it ran; 0 (invoked at once) elsewhere",
}
# Alarms that LocalStack stores but does not evaluate, with the reason: the harness evaluates
# them itself (evaluate_metric_math), every Period x EvaluationPeriods from their creation as
# LocalStack's scheduler would, and sets the state with SetAlarmState.
STAND_IN_EVALUATION = {
    "ExposureDrift": "metric math (ExposureDrift{Severity=public} + ExposureDrift{Severity=cross-account}): "
    "LocalStack's alarm scheduler evaluates single-metric alarms only ('Currently only simple MetricAlarm "
    "are supported'), so the harness reads each series the alarm names with GetMetricData (the data the "
    "function published), sums them as the expression says, applies the alarm's threshold, "
    "TreatMissingData and look-back exactly as LocalStack does for other alarms, and calls SetAlarmState; "
    "LocalStack sends the notification",
    "GuardrailRefused": "metric math (GuardrailRefused{Severity=public} + GuardrailRefused{Severity=cross-account}): "
    "evaluated by the harness as ExposureDrift is, from the data the function published",
    "WriteExposure": "metric math (WriteExposure{Severity=public} + WriteExposure{Severity=cross-account}): "
    "evaluated by the harness as ExposureDrift is, from the data the function published",
    "AsyncEventAge": "metric math (AsyncEventAge / (1000 x MaximumEventAgeInSeconds)): evaluated by the harness "
    "as ExposureDrift is, from the stood-in AWS/Lambda datum (STAND_IN)",
}
# Alarms that cannot be driven on the emulator, with the reason (reported, not driven).
NOT_DRIVABLE: dict[str, str] = {}
# The function's drift events on the bus (source and detail-types), and the severities the
# exposure rule passes.
GUARD_EVENT_SOURCE = "kms-replica-guard"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def client(service: str, region: str = REGION) -> Any:
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name=region,
        aws_access_key_id=ACCOUNT,
        aws_secret_access_key="test",
    )


def emulator_problem(needed: tuple[str, ...] = ("kms", "cloudwatch", "sns", "sqs")) -> str | None:
    """None when the emulator answers with every needed service, else why not."""
    try:
        with urllib.request.urlopen(f"{ENDPOINT}/_localstack/health", timeout=5) as resp:
            services = json.load(resp).get("services", {})
    except (urllib.error.URLError, OSError, ValueError) as err:
        return f"{ENDPOINT} does not answer ({err})"
    missing = {s: services.get(s) for s in needed if services.get(s) not in ("running", "available")}
    if missing:
        return f"{ENDPOINT} answers but these services are not running: {missing} (SERVICES in xtask/src/emulator.rs)"
    return None


# ---------------------------------------------------------------------------------------------
# Templates


@dataclass
class Source:
    """One synthesized template that declares alarms."""

    label: str  # e.g. "infra/.build/sam/template.cfn.json"
    tool: str  # "sam" or "cdk"
    template: dict[str, Any]
    # CDK: the stack name the literals were synthesized with; SAM: None (${AWS::StackName}).
    stack_name: str | None

    @property
    def params(self) -> dict[str, Any]:
        return self.template.get("Parameters", {})

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template.get("Resources", {}).items() if v.get("Type") == type_}

    def remediator(self) -> dict[str, Any] | None:
        """The remediator function (the detector's logical id starts with Detector, in SAM and CDK)."""
        fns = [r for k, r in self.of_type("AWS::Lambda::Function").items() if not k.startswith("Detector")]
        if len(fns) > 1:
            raise AssertionError(f"{self.label}: expected one remediator function, found {len(fns)}")
        return fns[0] if fns else None


def _cdk_stack_names() -> dict[str, str]:
    manifest = json.loads((CDK_OUT / "manifest.json").read_text(encoding="utf-8"))
    names = {}
    for artifact in manifest["artifacts"].values():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        props = artifact.get("properties", {})
        name = props.get("stackName") or re.sub(r"^.*\((.*)\)$", r"\1", artifact.get("displayName", ""))
        names[props["templateFile"]] = name
    return names


def sources(tools: tuple[str, ...] = ("sam", "cdk")) -> list[Source]:
    """Every SAM (translated) and CDK template; fails when either set is missing."""
    sam = sorted(SAM_BUILD.glob("*.cfn.json")) if "sam" in tools else []
    cdk = sorted(CDK_OUT.glob("*.template.json")) if "cdk" in tools else []
    if not sam and "sam" in tools:
        raise AssertionError(f"no translated SAM templates in {SAM_BUILD}: run infra/scripts/sam_to_cfn.py (make infra-test)")
    if not cdk and "cdk" in tools:
        raise AssertionError(f"no synthesized CDK templates in {CDK_OUT}: run `make synth` (make infra-test)")
    found = [Source(str(p.relative_to(ROOT)), "sam", json.loads(p.read_text(encoding="utf-8")), None) for p in sam]
    names = _cdk_stack_names() if cdk else {}
    for p in cdk:
        found.append(Source(str(p.relative_to(ROOT)), "cdk", json.loads(p.read_text(encoding="utf-8")), names[p.name]))
    return found


@dataclass
class TemplateAlarm:
    source: Source
    logical_id: str
    props: dict[str, Any]

    @property
    def key(self) -> str:
        """The alarm name without the stack name: `${AWS::StackName}-X` (SAM), `STACK-X` (CDK)."""
        name = self.props.get("AlarmName")
        if isinstance(name, dict) and isinstance(name.get("Fn::Sub"), str):
            m = re.fullmatch(r"\$\{AWS::StackName\}-(.+)", name["Fn::Sub"])
            if m:
                return m.group(1)
        if isinstance(name, str) and self.source.stack_name and name.startswith(self.source.stack_name + "-"):
            return name[len(self.source.stack_name) + 1 :]
        raise AssertionError(
            f"{self.source.label}:{self.logical_id}: AlarmName {name!r} is not '<stack name>-<alarm>'; "
            "the harness names test alarms after the stack"
        )

    @property
    def where(self) -> str:
        return f"{self.source.label}:{self.logical_id}"


def template_alarms(srcs: list[Source]) -> list[TemplateAlarm]:
    return [TemplateAlarm(s, lid, r.get("Properties", {})) for s in srcs for lid, r in s.of_type("AWS::CloudWatch::Alarm").items()]


def template_dashboards(srcs: list[Source]) -> list[tuple[Source, str, dict[str, Any]]]:
    return [(s, lid, r.get("Properties", {})) for s in srcs for lid, r in s.of_type("AWS::CloudWatch::Dashboard").items()]


# ---------------------------------------------------------------------------------------------
# One test deployment of a template: its references resolved


class Unresolvable(AssertionError):
    pass


@dataclass
class Deployment:
    source: Source
    stack: str  # the test stack name (alarm and dashboard names start with it)
    namespace: str  # the test metrics namespace
    topic_arn: str
    function_name: str
    queue: dict[str, str]  # the on-failure queue: name, url, arn
    overrides: dict[str, Any] = field(default_factory=dict)  # SAM parameter values
    sweep_queue: dict[str, str] = field(default_factory=dict)  # the sweep work queue: name, url, arn
    sweep_dlq: dict[str, str] = field(default_factory=dict)  # its dead-letter queue
    drift_bus: dict[str, str] = field(default_factory=dict)  # the test bus standing in for the template's drift bus: name, arn

    def __post_init__(self) -> None:
        # The namespace the template's function publishes to, as deployed (parameter default or
        # synthesized literal): mapped to the test namespace wherever it appears as a literal.
        fn = self.source.remediator()
        if fn is None:
            raise AssertionError(f"{self.source.label}: expected the function beside its alarms")
        env = fn["Properties"]["Environment"]["Variables"]
        self.deployed_namespace: str | None = None
        self.sam_overrides: dict[str, Any] = {}
        self.deployed_namespace = self.resolve(env["METRICS_NAMESPACE"])
        self.sam_overrides = {"MetricsNamespace": self.namespace} if "MetricsNamespace" in self.source.params else {}

    # -- references
    def _param(self, name: str) -> Any:
        values = {**self.sam_overrides, **self.overrides}
        if name in values:
            return values[name]
        return self.source.params[name].get("Default")

    def _pseudo(self, name: str) -> str:
        return {
            "AWS::StackName": self.stack,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }[name]

    def _resource(self, name: str, attr: str | None) -> str:
        resources = self.source.template.get("Resources", {})
        if name not in resources:
            raise Unresolvable(f"{self.source.label}: reference to unknown {name}")
        type_ = resources[name]["Type"]
        queue = self.queue
        if type_ == "AWS::SQS::Queue":
            queue = {"async": self.queue, "sweep": self.sweep_queue, "sweep-dlq": self.sweep_dlq}[self._queue_role(name)]
        table: dict[tuple[str, str | None], str] = {
            ("AWS::SNS::Topic", None): self.topic_arn,
            ("AWS::SNS::Topic", "TopicArn"): self.topic_arn,
            ("AWS::Lambda::Function", None): self.function_name,
            ("AWS::Lambda::Function", "Arn"): f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}",
            ("AWS::SQS::Queue", None): queue.get("url", ""),
            ("AWS::SQS::Queue", "QueueUrl"): queue.get("url", ""),
            ("AWS::SQS::Queue", "QueueName"): queue.get("name", ""),
            ("AWS::SQS::Queue", "Arn"): queue.get("arn", ""),
            ("AWS::Events::EventBus", None): self.drift_bus.get("name", ""),
            ("AWS::Events::EventBus", "Name"): self.drift_bus.get("name", ""),
            ("AWS::Events::EventBus", "Arn"): self.drift_bus.get("arn", ""),
        }
        if (type_, attr) not in table:
            raise Unresolvable(
                f"{self.source.label}: the test deployment has no {type_}{'.' + attr if attr else ''} ({name}); "
                "add it to Deployment._resource"
            )
        return table[(type_, attr)]

    def _queue_role(self, name: str) -> str:
        """Which test queue a template queue is: `async` (the on-failure destination), `sweep`
        (the queue of the SQS event source) or `sweep-dlq` (the sweep queue's redrive target)."""
        resources = self.source.template.get("Resources", {})

        def target(v: Any) -> str | None:
            if isinstance(v, dict) and "Fn::GetAtt" in v:
                ga = v["Fn::GetAtt"]
                return (ga if isinstance(ga, list) else ga.split("."))[0]
            return None

        for r in resources.values():
            props = r.get("Properties") or {}
            if r.get("Type") == "AWS::Lambda::EventInvokeConfig":
                if target(((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")) == name:
                    return "async"
            if r.get("Type") == "AWS::Lambda::EventSourceMapping" and target(props.get("EventSourceArn")) == name:
                return "sweep"
        for r in resources.values():
            if r.get("Type") == "AWS::SQS::Queue" and target(((r.get("Properties") or {}).get("RedrivePolicy") or {}).get("deadLetterTargetArn")) == name:
                return "sweep-dlq"
        raise Unresolvable(f"{self.source.label}: the queue {name} is neither the on-failure queue, the sweep queue nor its DLQ")

    def redrive(self) -> dict[str, Any]:
        """The sweep queue's RedrivePolicy in the template, resolved (maxReceiveCount as deployed)."""
        for name, r in self.source.template.get("Resources", {}).items():
            if r.get("Type") == "AWS::SQS::Queue" and (r.get("Properties") or {}).get("RedrivePolicy"):
                return self.resolve(r["Properties"]["RedrivePolicy"])
        raise AssertionError(f"{self.source.label}: no queue with a RedrivePolicy (the sweep queue)")

    def _ref(self, name: str, attr: str | None = None) -> Any:
        if attr is None and name.startswith("AWS::"):
            return self._pseudo(name)
        if attr is None and name in self.source.params:
            return self._param(name)
        return self._resource(name, attr)

    def _sub(self, text: str, local: dict[str, Any]) -> str:
        def one(m: re.Match[str]) -> str:
            ref = m.group(1)
            if ref in local:
                return str(self.resolve(local[ref]))
            name, _, attr = ref.partition(".")
            return str(self._ref(name, attr or None))

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def condition(self, name: str) -> bool:
        """A template condition at this deployment's parameter values."""
        return bool(self._condition(self.source.template["Conditions"][name]))

    def _condition(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Equals":
                return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
            if fn == "Fn::Not":
                return not self._condition(arg[0])
            if fn == "Fn::And":
                return all(self._condition(x) for x in arg)
            if fn == "Fn::Or":
                return any(self._condition(x) for x in arg)
        raise Unresolvable(f"{self.source.label}: cannot evaluate the condition {value}")

    def resolve(self, value: Any) -> Any:
        """The value with every intrinsic function resolved for this deployment."""
        if isinstance(value, dict):
            if set(value) == {"Fn::If"}:
                name, yes, no = value["Fn::If"]
                return self.resolve(yes if self.condition(name) else no)
            if set(value) == {"Ref"}:
                return self._ref(value["Ref"])
            if set(value) == {"Fn::GetAtt"}:
                name, attr = value["Fn::GetAtt"] if isinstance(value["Fn::GetAtt"], list) else value["Fn::GetAtt"].split(".", 1)
                return self._ref(name, attr)
            if set(value) == {"Fn::Sub"}:
                sub = value["Fn::Sub"]
                text, local = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
                return self._sub(text, local)
            if set(value) == {"Fn::Join"}:
                sep, parts = value["Fn::Join"]
                return sep.join(str(self.resolve(p)) for p in parts)
            if set(value) == {"Fn::FindInMap"}:
                name, key1, key2 = (str(self.resolve(v)) for v in value["Fn::FindInMap"])
                return self.source.template["Mappings"][name][key1][key2]
            if len(value) == 1 and next(iter(value)).startswith("Fn::"):
                raise Unresolvable(f"{self.source.label}: cannot resolve {value} for a test deployment")
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, str) and self.deployed_namespace and value == self.deployed_namespace:
            return self.namespace
        return value

    # -- what gets created
    def alarm_request(self, alarm: TemplateAlarm) -> dict[str, Any]:
        """PutMetricAlarm arguments: the template's properties resolved, Period = TEST_PERIOD."""
        req = self.resolve(alarm.props)
        req["AlarmName"] = f"{self.stack}-{alarm.key}"
        for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if key in req:
                req[key] = int(req[key])
        if "Threshold" in req:
            req["Threshold"] = float(req["Threshold"])
        if "Period" in req:
            req["Period"] = TEST_PERIOD
        for m in req.get("Metrics", []):
            if "MetricStat" in m:
                m["MetricStat"]["Period"] = TEST_PERIOD
            if "ReturnData" in m:
                m["ReturnData"] = m["ReturnData"] in (True, "true", "True")
        return req

    def rule_targets(self, props: dict[str, Any]) -> list[dict[str, Any]]:
        """A rule's targets resolved (the alarm topic is the test topic)."""
        return [self.resolve(t) for t in props.get("Targets", [])]

    def dashboard_body(self, props: dict[str, Any]) -> dict[str, Any]:
        body = json.loads(self.resolve(props["DashboardBody"]))
        ns = self.deployed_namespace

        def walk(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            if isinstance(v, str):
                if v == ns:
                    return self.namespace
                return v.replace("{" + ns + ",", "{" + self.namespace + ",")
            return v

        return walk(body)


def alarm_period(req: dict[str, Any]) -> int:
    """The alarm's Period, or for metric math the Period of its series."""
    if "Period" in req:
        return int(req["Period"])
    periods = {int(m["MetricStat"]["Period"]) for m in req.get("Metrics", []) if "MetricStat" in m}
    if len(periods) != 1:
        raise Unresolvable(f"{req.get('AlarmName')}: series with different periods {periods}")
    return periods.pop()


def alarm_metric_names(req: dict[str, Any]) -> list[str]:
    """The metric names an alarm watches (one, or those of its metric math)."""
    if "MetricName" in req:
        return [req["MetricName"]]
    return sorted({m["MetricStat"]["Metric"]["MetricName"] for m in req.get("Metrics", []) if "MetricStat" in m})


def alarm_namespaces(req: dict[str, Any]) -> set[str]:
    if "Namespace" in req:
        return {req["Namespace"]}
    return {m["MetricStat"]["Metric"]["Namespace"] for m in req.get("Metrics", []) if "MetricStat" in m}


_COMPARE = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


def arithmetic(expr: str, values: dict[str, float]) -> float:
    """An arithmetic metric-math expression (series ids, numbers, + - * / and parentheses) evaluated
    for one window; anything else (functions such as SEARCH or FILL) is refused."""
    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id in values:
            return values[node.id]
        raise Unresolvable(f"the harness evaluates arithmetic over series only, not {ast.dump(node)} in {expr!r}")

    return ev(ast.parse(expr, mode="eval"))


_OPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


def evaluate_metric_math(cw: Any, req: dict[str, Any]) -> tuple[str, list[float | None]]:
    """The state a metric-math alarm goes to now, and the datapoints it was decided on.

    As LocalStack's alarm scheduler does for a single-metric alarm: EvaluationPeriods + max(EP // 3, 2)
    windows of one Period each back from now, oldest first; a window's value is the expression over
    each series' statistic in it. Arithmetic only (`a + b`, `age / (1000 * 3600)`): in CloudWatch
    metric math a missing value counts as 0 in arithmetic, and a window where every series is
    missing has no datapoint.
    """
    series = {m["Id"]: m for m in req["Metrics"] if "MetricStat" in m}
    (expr,) = [m["Expression"] for m in req["Metrics"] if "Expression" in m and m.get("ReturnData", True)]
    ids = sorted(series)
    arithmetic(expr, {i: 1.0 for i in ids})  # refuses what it cannot evaluate, before any window
    period = alarm_period(req)
    ep = int(req["EvaluationPeriods"])
    now = time.time()
    values: list[float | None] = []
    for _ in range(ep + max(ep // 3, 2)):
        start = now - period
        window = []
        for i in ids:
            out = cw.get_metric_data(
                MetricDataQueries=[{"Id": i, "MetricStat": series[i]["MetricStat"], "ReturnData": True}],
                StartTime=start,
                EndTime=now,
            )["MetricDataResults"][0]["Values"]
            window.append(out[0] if out else None)
        values.insert(0, None if all(v is None for v in window) else arithmetic(expr, {i: v or 0.0 for i, v in zip(ids, window)}))
        now = start
    treat = req.get("TreatMissingData", "missing")
    breaching = []
    for v in values:
        if v is None:
            if treat in ("breaching", "notBreaching"):
                breaching.append(treat == "breaching")
        else:
            breaching.append(_COMPARE[req["ComparisonOperator"]](v, float(req["Threshold"])))
    if breaching.count(True) >= int(req.get("DatapointsToAlarm", ep)):
        return "ALARM", values
    if not breaching and treat == "missing":
        return "INSUFFICIENT_DATA", values
    return "OK", values


def dashboard_metrics(body: dict[str, Any]) -> list[tuple[str, str, frozenset[str]]]:
    """(namespace, metric name, dimension names) of every metric a dashboard body shows."""
    found = []
    for widget in body.get("widgets", []):
        for row in (widget.get("properties") or {}).get("metrics", []):
            plain = [x for x in row if not isinstance(x, dict)]
            exprs = [x["expression"] for x in row if isinstance(x, dict) and "expression" in x]
            for expr in exprs:
                for m in re.finditer(r"SEARCH\('\{([^,}]+)((?:,[^}]+)*)\}\s*MetricName=\"([^\"]+)\"", expr):
                    dims = frozenset(d.strip() for d in m.group(2).split(",") if d.strip())
                    found.append((m.group(1), m.group(3), dims))
            if plain:
                if plain[0] == "..." or plain[0] == ".":
                    raise AssertionError(f"dashboard metric shorthand {row} is not supported by the check")
                ns, name, rest = plain[0], plain[1], plain[2:]
                found.append((ns, name, frozenset(rest[0::2])))
            if not plain and not exprs:
                raise AssertionError(f"dashboard metric row {row} names no metric")
    return found


def driven() -> None:
    """Says, in the file ALARMS_DRIVEN_FILE names (when set), that the run needs cargo no more and
    its data is sent: `make test` starts the Rust tests then, beside the wait for the alarm windows
    (cargo builds one thing at a time in a target dir, and the scenarios' data must not wait on a
    build). Written again, harmlessly, when the run ends early (`make test` also writes it when
    infra-test ends)."""
    path = os.environ.get("ALARMS_DRIVEN_FILE")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(f"{time.time():.0f}\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The function under xtask's runner (cargo xtask serve)


def build_runner() -> None:
    """Builds the runner before the scenarios start theirs, so that none waits on a build past its
    start-up timeout (each `cargo xtask serve` then finds the functions built, too)."""
    log("    cargo build -p xtask")
    subprocess.run(["cargo", "build", "-p", "xtask"], cwd=ROOT, check=True)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Watch:
    """The functions (dev build: `bootstrap`, and `detector` as `binary`) served on 127.0.0.1:PORT by
    xtask's runner (`cargo xtask serve`: cargo lambda watch, the one the demo and the end-to-end run
    use), in its own process group; SIGTERM stops it and the function with it."""

    def __init__(self, name: str, env: dict[str, str], port: int, binary: str = "bootstrap") -> None:
        self.name, self.port, self.binary = name, port, binary
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        self.env_file = OUT_DIR / f"{name}.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
        self.log_path = OUT_DIR / f"{name}.watch.log"
        self.serve_log = OUT_DIR / f"{name}.serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if _port_open(self.port):
            raise AssertionError(f"127.0.0.1:{self.port} is already in use; set ALARMS_WATCH_PORT to a free base port")
        # The child writes through its own copy of the descriptor; ours is closed once it runs.
        with open(self.serve_log, "wb") as out:
            self.proc = subprocess.Popen(
                ["cargo", "xtask", "serve", "--env-file", str(self.env_file), "--port", str(self.port), "--log", str(self.log_path)],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_listening(self, timeout: float = 120) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if self.proc.poll() is not None:
                raise AssertionError(f"cargo xtask serve ({self.name}) exited: {self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"cargo xtask serve ({self.name}) not listening within {timeout} s: {self.tail()}")
            time.sleep(0.5)

    def tail(self, n: int = 30) -> str:
        lines: list[str] = []
        for path in (self.serve_log, self.log_path):
            try:
                lines += path.read_text(errors="replace").splitlines()
            except OSError:
                pass
        return "\n".join(lines[-n:])

    def invoke(self, payload: str) -> tuple[bool, Any]:
        url = f"http://127.0.0.1:{self.port}/2015-03-31/functions/{self.binary}/invocations"
        req = urllib.request.Request(url, data=payload.encode(), headers={"content-type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=600) as resp:
                ok, raw = True, resp.read()
        except urllib.error.HTTPError as err:
            ok, raw = False, err.read()
        try:
            return ok, json.loads(raw)
        except ValueError:
            return ok, raw.decode(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)


# ---------------------------------------------------------------------------------------------
# KMS


def default_policy() -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Id": "key-default-1",
            "Statement": [
                {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"}
            ],
        }
    )


# Would lock the remediator (and the account root) out: only role/app may administer the key.
LOCKOUT_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "OnlyTheApp", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/app"}, "Action": "kms:*", "Resource": "*"}
        ],
    }
)


def opened_to_everyone(policy: str) -> str:
    """The policy with one more statement: anyone may decrypt, unconditionally (a public drift)."""
    doc = json.loads(policy)
    doc["Statement"].append({"Sid": "ShareWithEveryone", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"})
    return json.dumps(doc)


def shared_with(policy: str, account: str) -> str:
    """The policy with one more statement: another account may decrypt (a cross-account grant)."""
    doc = json.loads(policy)
    doc["Statement"].append(
        {"Sid": "ShareWithPartner", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:Decrypt", "Resource": "*"}
    )
    return json.dumps(doc)


def create_family(key_id: str, primary_policy: str, bypass: bool = False, replica_region: str = REPLICA_REGION) -> None:
    """A multi-Region primary in REGION with a fixed id, and its replica (default policy) in `replica_region`."""
    kms = client("kms")
    kms.create_key(
        MultiRegion=True,
        Description="kms-replica-guard alarm test key",
        Policy=primary_policy,
        BypassPolicyLockoutSafetyCheck=bypass,
        Tags=[{"TagKey": "_custom_id_", "TagValue": key_id}],
    )
    kms.replicate_key(KeyId=key_id, ReplicaRegion=replica_region)


def event(name: str, key_id: str, account: str = ACCOUNT) -> str:
    """A sample event from events/, rewritten to name key_id, REPLICA_REGION and (its `account`,
    recipientAccountId, caller and key ARN) `account`."""
    text = (EVENTS / f"{name}.json").read_text(encoding="utf-8")
    return text.replace(SAMPLE_KEY_ID, key_id).replace("us-west-2", REPLICA_REGION).replace(ACCOUNT, account)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_key_id() -> str:
    return "mrk-" + secrets.token_hex(16)


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Invocation:
    what: str
    ok: bool
    body: Any


@dataclass
class ScenarioRun:
    name: str
    namespace: str
    function_name: str
    queue: dict[str, str]
    env: dict[str, str]
    watch: Watch | None = None
    invocations: list[Invocation] = field(default_factory=list)
    data_sent_at: float | None = None  # monotonic time the last datum was sent
    key_ids: list[str] = field(default_factory=list)
    dlq_record: dict[str, Any] | None = None
    dlq_purged_at: float | None = None
    sweep_queue: dict[str, str] = field(default_factory=dict)
    sweep_dlq: dict[str, str] = field(default_factory=dict)
    sweep_dlq_purged_at: float | None = None
    sweep_receives: int = 0  # how often the harness (as the event source) received the work item
    first_data_at: float | None = None  # monotonic time the first datum was sent
    alarm_reasons: dict[str, str] = field(default_factory=dict)  # heartbeat: the StateReason of its ALARM before any sweep
    sweeper: threading.Thread | None = None  # heartbeat: the scheduled sweeps while the run waits
    throttles: int = 0  # throttled: the attempts the (stood-in) Lambda service refused before the invocation
    exemption: dict[str, str] = field(default_factory=dict)  # guardrail: the exclude tag set on a key


@dataclass
class TestAlarm:
    scenario: str
    alarm: TemplateAlarm
    request: dict[str, Any]
    expect_alarm: bool
    history: list[tuple[str, float]] = field(default_factory=list)  # (state, monotonic time)
    created_at: float = 0.0  # LocalStack evaluates it then and every Period x EvaluationPeriods s after
    stand_in_evaluations: list[dict[str, Any]] = field(default_factory=list)  # metric math: the harness's evaluations
    next_evaluation: float = 0.0  # metric math: when the harness evaluates it next (monotonic)

    @property
    def stand_in(self) -> bool:
        """A metric-math alarm: LocalStack does not evaluate it, the harness does."""
        return "Metrics" in self.request

    @property
    def every(self) -> float:
        return alarm_period(self.request) * int(self.request["EvaluationPeriods"])

    @property
    def name(self) -> str:
        return self.request["AlarmName"]

    def first(self, state: str, after: float = 0.0) -> float | None:
        return next((t for s, t in self.history if s == state and t >= after), None)


class Run:
    """One test run: every alarm of every template, per scenario, on the emulator."""

    def __init__(self, scenarios: tuple[str, ...] = SCENARIOS, tools: tuple[str, ...] = ("sam", "cdk"), wait_ok: bool = True) -> None:
        self.id = secrets.token_hex(3)
        self.prefix = f"krg-alarms-{self.id}"
        self.scenario_names = scenarios
        self.wait_ok = wait_ok
        self.sources = sources(tools)
        self.alarms = template_alarms(self.sources)
        self.dashboards = template_dashboards(self.sources)
        self.cw, self.sns, self.sqs = client("cloudwatch"), client("sns"), client("sqs")
        self.scenarios: dict[str, ScenarioRun] = {}
        self.test_alarms: list[TestAlarm] = []
        self.deployments: dict[tuple[str, str], Deployment] = {}
        self.notifications: list[dict[str, Any]] = []
        self.dashboard_results: list[dict[str, Any]] = []
        self.listed_metrics: dict[str, list[dict[str, Any]]] = {}
        self.t0 = time.monotonic()
        self.topic_arn = ""
        self.notify_queue_url = ""
        self.created_dashboards: list[str] = []
        self.created_queues: list[str] = []
        self.events = client("events")
        self.created_rules: list[tuple[str, str]] = []  # (rule name, event bus)
        self.drift_bus: dict[str, str] = {}  # the run's test bus standing in for the templates' drift bus
        self.event_bus = "default"  # EVENT_BUS of the test functions: the templates' drift bus, resolved
        self.capture_queue_url = ""
        self.guard_events: list[dict[str, Any]] = []  # every event the function put on the bus
        self.data_stopped_wall = float("inf")
        self.rule_messages: list[dict[str, Any]] = []  # what the exposure rules sent to the topic (SNS envelopes)
        self.exposure_rules: list[tuple[Source, str]] = []  # (template, test rule name)
        self.stand_in_stop = threading.Event()
        self.stand_in_thread: threading.Thread | None = None

    def elapsed(self, t: float | None = None) -> float:
        return (time.monotonic() if t is None else t) - self.t0

    # -- set-up
    def _queue(self, name: str, attributes: dict[str, str] | None = None) -> dict[str, str]:
        url = self.sqs.create_queue(QueueName=name, Attributes=attributes or {})["QueueUrl"]
        self.created_queues.append(url)
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"name": name, "url": url, "arn": arn}

    def setup(self) -> None:
        self.topic_arn = self.sns.create_topic(Name=f"{self.prefix}-topic")["TopicArn"]
        notify = self._queue(f"{self.prefix}-subscriber")
        self.notify_queue_url = notify["url"]
        self.sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=notify["arn"])
        log(f"==> {self.prefix}: SNS topic {self.topic_arn}, subscriber queue {notify['name']}")
        spike_n = 1 + max(
            (int(float(Deployment(a.source, "x", "x", "", "", {}).resolve(a.props["Threshold"]))) for a in self.alarms if a.key == "AutoFixApplied-spike"),
            default=0,
        )
        self.spike_replicas = spike_n
        self.setup_drift_bus()
        for i, name in enumerate(self.scenario_names):
            ns = f"KmsReplicaGuardAlarms/{self.id}/{name}"
            fn = f"{self.prefix}-{name}-fn"
            dlq = self._queue(f"{self.prefix}-{name}-dlq")
            sweep_dlq = self._queue(f"{self.prefix}-{name}-sweep-dlq")
            # The sweep queue with the redrive policy of the templates (maxReceiveCount as deployed).
            redrive = {**next(Deployment(s, "x", "x", "", "", {}).redrive() for s in self.sources if s.of_type("AWS::CloudWatch::Alarm")), "deadLetterTargetArn": sweep_dlq["arn"]}
            sweep_queue = self._queue(f"{self.prefix}-{name}-sweep", {"RedrivePolicy": json.dumps(redrive), "VisibilityTimeout": "0"})
            env = {
                "AWS_ENDPOINT_URL": ENDPOINT,
                "AWS_ACCESS_KEY_ID": ACCOUNT,
                "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_LAMBDA_LOG_FORMAT": "JSON",
                "AWS_LAMBDA_FUNCTION_NAME": fn,
                "REMEDIATION_MODE": "enforce",
                "BASELINE_SOURCE": f"file:{BASELINE}",
                "REMEDIATOR_ROLE_ARN": REMEDIATOR_ROLE_ARN,
                "METRICS_NAMESPACE": ns,
                "SWEEP_REGIONS": REPLICA_REGION,
                "EVENT_BUS": self.event_bus,
            }
            if name == "failed":
                env["BASELINE_SOURCE"] = "primary"
            if name == "flap":
                env["FLAP_MAX"] = "1"
            if name == "member":
                env["MEMBER_ROLE_NAME"] = MEMBER_ROLE_NAME
                env["MEMBER_ACCOUNTS"] = MEMBER_ACCOUNT
                # Nothing listens there: every AssumeRole fails (connection refused).
                env["AWS_ENDPOINT_URL_STS"] = f"http://127.0.0.1:{closed_port()}"
            if name == "exposure":
                env["REMEDIATION_MODE"] = "dry-run"
            if name == "heartbeat":
                env["SWEEP_REGIONS"] = HEARTBEAT_REGION
            if name == "guardrail":
                # Mirrors each primary: one opened to everyone (refused), one shared with the partner (written).
                env["BASELINE_SOURCE"] = "primary"
                env["TRUSTED_ACCOUNTS"] = PARTNER_ACCOUNT
            binary = "bootstrap"
            if name == "findings":
                binary = DETECTOR_BINARY
                env["SWEEP_REGIONS"] = FINDINGS_REGION
                env["SECURITY_HUB"] = "on"
                # Nothing listens there: every import and every answer fails (connection refused).
                env["AWS_ENDPOINT_URL_SECURITYHUB"] = f"http://127.0.0.1:{closed_port()}"
                env["AWS_ENDPOINT_URL_CONFIG_SERVICE"] = f"http://127.0.0.1:{closed_port()}"
                env["AWS_LAMBDA_FUNCTION_NAME"] = f"{self.prefix}-{name}-detector"
                if binary == "detector":
                    # The detector's environment as the stacks set it: no mode (always dry-run), no drift bus.
                    for var in ("REMEDIATION_MODE", "EVENT_BUS"):
                        env.pop(var)
            sc = ScenarioRun(name, ns, fn, dlq, env, sweep_queue=sweep_queue, sweep_dlq=sweep_dlq)
            sc.watch = Watch(f"{self.prefix}-{name}", env, WATCH_PORT + i, binary)
            self.scenarios[name] = sc
            for src in self.sources:
                if not src.of_type("AWS::CloudWatch::Alarm") and not src.of_type("AWS::CloudWatch::Dashboard"):
                    continue
                dep = Deployment(
                    src, f"{self.prefix}-{name}-{src.tool}", ns, self.topic_arn, fn, dlq,
                    sweep_queue=sweep_queue, sweep_dlq=sweep_dlq, drift_bus=self.drift_bus,
                )
                self.deployments[(name, src.label)] = dep
        # Every alarm of every template, once per scenario.
        for name in self.scenario_names:
            for alarm in self.alarms:
                if alarm.key in NOT_DRIVABLE:
                    continue
                if alarm.key in ONLY_IN and DRIVEN[alarm.key] != name:
                    continue
                dep = self.deployments[(name, alarm.source.label)]
                req = dep.alarm_request(alarm)
                self.test_alarms.append(TestAlarm(name, alarm, req, DRIVEN.get(alarm.key) == name))
        for ta in self.test_alarms:
            self.cw.put_metric_alarm(**ta.request)
            ta.created_at = time.monotonic()
            ta.next_evaluation = ta.created_at
        if any(ta.stand_in for ta in self.test_alarms):
            self.stand_in_thread = threading.Thread(target=self.evaluate_stand_ins, name="stand-in-evaluation", daemon=True)
            self.stand_in_thread.start()
        log(f"==> {len(self.test_alarms)} alarms created ({len(self.alarms)} in the templates x {len(self.scenario_names)} scenarios), Period {TEST_PERIOD} s")
        self.create_exposure_rules()

    def setup_drift_bus(self) -> None:
        """The bus the templates' functions publish their drift events to (EVENT_BUS, resolved at the
        templates' defaults): when it is the stack's own event bus (AWS::Events::EventBus), a test bus
        of the run stands in for it; the test functions publish there. SAM and CDK must agree: one
        function per scenario serves both."""
        run_bus = f"{self.prefix}-drift"
        arn = ""
        buses = set()
        for src in self.sources:
            fn = src.remediator()
            if fn is None:
                continue
            env = fn["Properties"]["Environment"]["Variables"]
            dep = Deployment(src, "x", "x", "", "", {}, drift_bus={"name": run_bus, "arn": "<test bus>"})
            buses.add(dep.resolve(env["EVENT_BUS"]))
        if len(buses) != 1:
            raise AssertionError(f"the templates' functions publish to different buses: {sorted(buses)}")
        (bus,) = buses
        if bus == run_bus:
            arn = self.events.create_event_bus(Name=run_bus)["EventBusArn"]
            self.drift_bus.update({"name": run_bus, "arn": arn})
            log(f"==> the templates' drift bus: the run's test bus {run_bus}")
        self.event_bus = bus

    def create_exposure_rules(self) -> None:
        """The templates' exposure notification rules on the bus each names (the run's test bus for the
        templates' drift bus), targeting the test topic, and a capture rule copying every event of the
        function on the function's bus (EVENT_BUS) to a queue."""
        capture = self._queue(f"{self.prefix}-guard-events")
        self.capture_queue_url = capture["url"]
        name = f"{self.prefix}-capture"
        self.events.put_rule(Name=name, EventPattern=json.dumps({"source": [GUARD_EVENT_SOURCE]}), EventBusName=self.event_bus)
        self.created_rules.append((name, self.event_bus))
        self.events.put_targets(Rule=name, EventBusName=self.event_bus, Targets=[{"Id": "capture", "Arn": capture["arn"]}])
        first = self.scenario_names[0]
        for src in self.sources:
            for lid, r in src.of_type("AWS::Events::Rule").items():
                props = r.get("Properties") or {}
                if GUARD_EVENT_SOURCE not in ((props.get("EventPattern") or {}).get("source") or []):
                    continue
                dep = self.deployments[(first, src.label)]
                # The notification rules (to the alarm topic); the detector's rule invokes a function.
                if any(t.get("Arn") != self.topic_arn for t in dep.rule_targets(props)):
                    continue
                name = f"{self.prefix}-{src.tool}-{lid}"[:64]
                # Resolved for the deployment: the rule names the stack's own account.
                pattern = dep.resolve(props["EventPattern"])
                bus = dep.resolve(props.get("EventBusName", "default"))
                if bus != self.event_bus:
                    raise AssertionError(f"{src.label}:{lid} reads the guard's events on {bus}, the function publishes to {self.event_bus}")
                self.events.put_rule(Name=name, EventPattern=json.dumps(pattern), EventBusName=bus)
                self.created_rules.append((name, bus))
                self.events.put_targets(Rule=name, EventBusName=bus, Targets=dep.rule_targets(props))
                self.exposure_rules.append((src, name))
        log(f"==> exposure rules on the bus {self.event_bus}: {', '.join(n for _, n in self.exposure_rules)}; capture rule -> {capture['name']}")

    # -- driving
    def start_functions(self) -> None:
        build_runner()
        for sc in self.scenarios.values():
            assert sc.watch
            sc.watch.start()
        for sc in self.scenarios.values():
            assert sc.watch
            sc.watch.wait_listening()
        log("==> the function listens under cargo xtask serve: " + ", ".join(f"{s.name} :{s.watch.port}" for s in self.scenarios.values() if s.watch))

    def _invoke(self, sc: ScenarioRun, what: str, payload: str) -> Invocation:
        assert sc.watch
        ok, body = sc.watch.invoke(payload)
        inv = Invocation(what, ok, body)
        sc.invocations.append(inv)
        sc.data_sent_at = time.monotonic()
        if sc.first_data_at is None:
            sc.first_data_at = sc.data_sent_at
        return inv

    def drive_spike(self, sc: ScenarioRun) -> None:
        ids = [fresh_key_id() for _ in range(self.spike_replicas)]
        for key_id in ids:
            create_family(key_id, default_policy())
        sc.key_ids = ids
        self.within_one_evaluation_window(sc, "AutoFixApplied-spike", needed=25)
        for key_id in ids:
            self._invoke(sc, f"replicate-key {key_id}", event("replicate-key", key_id))
        log(f"    spike: {len(ids)} drifted replicas (threshold {self.spike_replicas - 1}), {sum(1 for i in sc.invocations for o in _outcomes(i) if o.get('action') == 'remediated')} remediated")

    def within_one_evaluation_window(self, sc: ScenarioRun, key: str, needed: float) -> None:
        """Waits, if needed, so that the next `needed` seconds hold no evaluation of the alarm.

        Each evaluation sums one Period back from its own time, so data published across an
        evaluation would be split between two windows and might cross the threshold in neither.
        """
        for ta in self.test_alarms:
            if ta.scenario != sc.name or ta.alarm.key != key:
                continue
            every = ta.every
            since = (time.monotonic() - ta.created_at) % every
            if every - since < needed:
                wait = every - since + 1.0
                log(f"    {sc.name}: waiting {wait:.0f} s for {ta.name}'s evaluation to pass (the data must land in one window)")
                time.sleep(wait)

    def drive_failed(self, sc: ScenarioRun) -> None:
        key_id = fresh_key_id()
        create_family(key_id, LOCKOUT_POLICY, bypass=True)
        sc.key_ids = [key_id]
        payload = event("replicate-key", key_id)
        inv = self._invoke(sc, f"replicate-key {key_id} (primary would lock the remediator out)", payload)
        # What Lambda puts in the on-failure destination after the retries.
        record = {
            "version": "1.0",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "requestContext": {
                "requestId": secrets.token_hex(16),
                "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{sc.function_name}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": json.loads(payload),
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": inv.body,
        }
        sc.dlq_record = record
        if not inv.ok:
            self.sqs.send_message(QueueUrl=sc.queue["url"], MessageBody=json.dumps(record))
            sc.data_sent_at = time.monotonic()
        log(f"    failed: invocation {'failed' if not inv.ok else 'SUCCEEDED (unexpected)'}: {json.dumps(inv.body)[:300]}")

    def drive_flap(self, sc: ScenarioRun) -> None:
        key_id = fresh_key_id()
        create_family(key_id, default_policy())
        sc.key_ids = [key_id]
        self._invoke(sc, "replicate-key (first fix)", event("replicate-key", key_id))
        # The other writer puts its policy back.
        client("kms", REPLICA_REGION).put_key_policy(KeyId=key_id, PolicyName="default", Policy=default_policy())
        inv = self._invoke(sc, "put-key-policy (drift put back)", event("put-key-policy-replica-id", key_id))
        log(f"    flap: second event -> {[o.get('action') for o in _outcomes(inv)]}")

    def drive_member(self, sc: ScenarioRun) -> None:
        key_id = fresh_key_id()
        # The key is in the member account, which the function cannot enter.
        inv = self._invoke(sc, f"put-key-policy from {MEMBER_ACCOUNT} (AssumeRole fails)", event("put-key-policy-replica-id", key_id, MEMBER_ACCOUNT))
        log(f"    member: event from {MEMBER_ACCOUNT} -> {'ok' if inv.ok else 'error'}: {json.dumps(inv.body)[:300]}")
        inv = self._invoke(sc, f"put-key-policy from {OTHER_ACCOUNT} (not in MEMBER_ACCOUNTS)", event("put-key-policy-replica-id", key_id, OTHER_ACCOUNT))
        log(f"    member: event from {OTHER_ACCOUNT} -> {'ok' if inv.ok else 'error'}: {json.dumps(inv.body)[:300]}")
        # A sweep work item for the member account, worked as the SQS event source would.
        body = json.dumps({"sweep": {"account": MEMBER_ACCOUNT, "regions": [REPLICA_REGION]}})
        self.sqs.send_message(QueueUrl=sc.sweep_queue["url"], MessageBody=body)
        for _ in range(10):
            msgs = self.sqs.receive_message(
                QueueUrl=sc.sweep_queue["url"], MaxNumberOfMessages=5, WaitTimeSeconds=1, AttributeNames=["All"]
            ).get("Messages", [])
            if not msgs:
                # Gone: deleted after a success, or moved to the sweep DLQ after maxReceiveCount receives.
                break
            sc.sweep_receives += 1
            records = [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": sc.sweep_queue["arn"],
                    "awsRegion": REGION,
                }
                for m in msgs
            ]
            inv = self._invoke(sc, f"sweep work item, receive {sc.sweep_receives}", json.dumps({"Records": records}))
            failed = {f.get("itemIdentifier") for f in (inv.body.get("batchItemFailures", []) if isinstance(inv.body, dict) else [])}
            for m in msgs:
                # A failed invocation fails the whole batch; listed items stay for a retry.
                if inv.ok and m["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=sc.sweep_queue["url"], ReceiptHandle=m["ReceiptHandle"])
            log(f"    member: sweep work item receive {sc.sweep_receives} -> {'ok' if inv.ok else 'error'}, batchItemFailures {sorted(x for x in failed if x)}")
        sc.data_sent_at = time.monotonic()

    def drive_exposure(self, sc: ScenarioRun) -> None:
        key_id = fresh_key_id()
        create_family(key_id, default_policy())
        sc.key_ids = [key_id]
        # Someone opens the replica to everyone; CloudTrail's PutKeyPolicy event reaches the function.
        client("kms", REPLICA_REGION).put_key_policy(KeyId=key_id, PolicyName="default", Policy=opened_to_everyone(default_policy()))
        inv = self._invoke(sc, "put-key-policy (replica opened to *, dry-run)", event("put-key-policy-replica-id", key_id))
        log(
            f"    exposure: {[(o.get('action'), (o.get('exposure') or {}).get('severity')) for o in _outcomes(inv)]}, "
            f"notifications {inv.body.get('notifications') if isinstance(inv.body, dict) else None}"
        )

    def drive_heartbeat(self, sc: ScenarioRun) -> None:
        """No sweep has completed yet: the heartbeat must be in ALARM (missing data is breaching).
        Then the scheduled sweep runs every HEARTBEAT_SWEEP_EVERY s until the run ends: OK, and
        it must stay OK."""
        mine = [ta for ta in self.test_alarms if ta.scenario == sc.name and ta.alarm.key == "SweepCompleted-heartbeat"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = {}
            for page in self.cw.get_paginator("describe_alarms").paginate(AlarmNames=[ta.name for ta in mine]):
                found.update({a["AlarmName"]: a for a in page["MetricAlarms"]})
            if all(found.get(ta.name, {}).get("StateValue") == "ALARM" for ta in mine):
                sc.alarm_reasons = {ta.name: found[ta.name]["StateReason"] for ta in mine}
                break
            time.sleep(POLL_SECONDS)
        self.poll()
        log(f"    heartbeat: before any sweep: {sc.alarm_reasons or 'NOT in ALARM within 60 s'}")
        payload = (EVENTS / "scheduled-sweep.json").read_text(encoding="utf-8")

        def sweep_until_stopped() -> None:
            while True:
                inv = self._invoke(sc, "scheduled sweep", payload)
                if not inv.ok:
                    log(f"    heartbeat: sweep failed: {json.dumps(inv.body)[:300]}")
                if self.stand_in_stop.wait(HEARTBEAT_SWEEP_EVERY):
                    return

        sc.sweeper = threading.Thread(target=sweep_until_stopped, name="heartbeat-sweeps", daemon=True)
        sc.sweeper.start()

    def drive_guardrail(self, sc: ScenarioRun) -> None:
        """BASELINE_SOURCE=primary, TRUSTED_ACCOUNTS=PARTNER_ACCOUNT: a primary opened to everyone is
        mirrored (the guardrails refuse it: GuardrailRefused{public}, a Write Refused event), a primary
        shared with the partner is mirrored and written (a trusted grant: `access`); and the exclude
        tag set on a third replica (an Exemption Granted event)."""
        public, partner, exempt = fresh_key_id(), fresh_key_id(), fresh_key_id()
        create_family(public, opened_to_everyone(default_policy()))
        create_family(partner, shared_with(default_policy(), PARTNER_ACCOUNT))
        create_family(exempt, default_policy())
        # The replica as ReplicateKey may leave it (the emulator copies the primary's policy): without
        # the partner's grant, so that mirroring the primary writes it.
        client("kms", REPLICA_REGION).put_key_policy(KeyId=partner, PolicyName="default", Policy=default_policy())
        sc.key_ids = [public, partner, exempt]
        # alice's PutKeyPolicy on the primary (as events/put-key-policy-primary.json): mirrored to its replica.
        inv = self._invoke(sc, "put-key-policy on the primary (opened to *, mirrored)", event("put-key-policy-primary", public))
        log(f"    guardrail: public primary -> {'ok' if inv.ok else 'error'}: {json.dumps(inv.body)[:300]}")
        inv = self._invoke(sc, "replicate-key (primary shared with the partner, mirrored)", event("replicate-key", partner))
        log(f"    guardrail: partner primary -> {[(o.get('action'), (o.get('write_exposure') or {}).get('severity')) for o in _outcomes(inv)]}")
        until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).strftime("%Y-%m-%d")
        value = f"until={until} ticket OPS-4711"
        client("kms", REPLICA_REGION).tag_resource(KeyId=exempt, Tags=[{"TagKey": EXCLUDE_TAG, "TagValue": value}])
        sc.exemption = {"key_id": exempt, "value": value}
        payload = event("tag-resource-exclude", exempt).replace("until=2027-01-31 ticket OPS-4711", value)
        inv = self._invoke(sc, "tag-resource (exclude tag set)", payload)
        log(f"    guardrail: exclude tag -> {'ok' if inv.ok else 'error'}: {json.dumps(inv.body)[:300]}")

    def drive_throttled(self, sc: ScenarioRun) -> None:
        """A KMS event that Lambda (stood in: STAND_IN) throttled THROTTLED_ATTEMPTS times, then ran:
        the real function handles it (a drifted replica, remediated)."""
        key_id = fresh_key_id()
        create_family(key_id, default_policy())
        sc.key_ids = [key_id]
        sc.throttles = THROTTLED_ATTEMPTS
        inv = self._invoke(sc, f"replicate-key after {THROTTLED_ATTEMPTS} throttled attempts", event("replicate-key", key_id))
        log(f"    throttled: {[o.get('action') for o in _outcomes(inv)]}")

    def drive_findings(self, sc: ScenarioRun) -> None:
        """The detector with Security Hub and AWS Config unreachable: the guard's event about a replica
        (its finding is not imported) and a Config rule invocation for it (its answer is not put: the
        invocation fails). One key, never a sweep: the shared emulator may hold other keys there."""
        key_id = fresh_key_id()
        create_family(key_id, default_policy(), replica_region=FINDINGS_REGION)
        sc.key_ids = [key_id]
        if DETECTOR_BINARY == "detector":
            # A drift event of the guard names the key; the detector re-reads it.
            notification = (ROOT / "infra" / "tests" / "fixtures" / "drift-access-remediated.json").read_text(encoding="utf-8")
            payload = notification.replace(SAMPLE_KEY_ID, key_id).replace("eu-west-1", FINDINGS_REGION)
        else:
            payload = (EVENTS / "put-key-policy-replica-id.json").read_text(encoding="utf-8").replace(SAMPLE_KEY_ID, key_id).replace("us-west-2", FINDINGS_REGION)
        inv = self._invoke(sc, "the replica's event (Security Hub unreachable)", payload)
        log(f"    findings: event -> {'ok' if inv.ok else 'error'}: {json.dumps(inv.body)[:300]}")
        config = (EVENTS / "config-rule-change.json").read_text(encoding="utf-8").replace(SAMPLE_KEY_ID, key_id).replace("us-west-2", FINDINGS_REGION)
        inv = self._invoke(sc, "AWS Config rule invocation (Config unreachable)", config)
        log(f"    findings: Config invocation -> {'ok' if inv.ok else 'error'}: {json.dumps(inv.body)[:300]}")

    def max_event_age_seconds(self) -> int:
        """The smallest MaximumEventAgeInSeconds the templates deploy (resolved at their defaults)."""
        ages = []
        for src in self.sources:
            for r in src.of_type("AWS::Lambda::EventInvokeConfig").values():
                ages.append(int(Deployment(src, "x", "x", "", "", {}).resolve(r["Properties"]["MaximumEventAgeInSeconds"])))
        if not ages:
            raise AssertionError("no AWS::Lambda::EventInvokeConfig in the templates (MaximumEventAgeInSeconds)")
        return min(ages)

    def publish_write_exposure(self) -> None:
        """The WriteExposure datum the function cannot publish (see STAND_IN)."""
        if "guardrail" in self.scenarios:
            self.cw.put_metric_data(
                Namespace=self.scenarios["guardrail"].namespace,
                MetricData=[{"MetricName": "WriteExposure", "Dimensions": [{"Name": "Severity", "Value": "cross-account"}], "Value": 1.0, "Unit": "Count"}],
            )

    def publish_lambda_metrics(self) -> None:
        """The Lambda service's data for each scenario (see STAND_IN): Errors, Throttles,
        AsyncEventsDropped and AsyncEventAge, with the FunctionName the alarms name."""
        age_ms = THROTTLED_AGE_FRACTION * self.max_event_age_seconds() * 1000
        for sc in self.scenarios.values():
            failed = sum(1 for i in sc.invocations if not i.ok)
            if sc.name == "findings":
                # The detector's invocations: its own FunctionName, which no alarm of the stacks watches.
                self.cw.put_metric_data(
                    Namespace="AWS/Lambda",
                    MetricData=[{"MetricName": "Errors", "Dimensions": [{"Name": "FunctionName", "Value": f"{self.prefix}-{sc.name}-detector"}],
                                 "Value": failed, "Unit": "Count"}],
                )
                failed = 0
            dropped = 1 if sc.dlq_record is not None and sc.name == "failed" and failed else 0
            values = {
                "Errors": (failed, "Count"),
                "Throttles": (sc.throttles, "Count"),
                "AsyncEventsDropped": (dropped, "Count"),
                "AsyncEventAge": (age_ms if sc.throttles else 0.0, "Milliseconds"),
            }
            self.cw.put_metric_data(
                Namespace="AWS/Lambda",
                MetricData=[
                    {"MetricName": name, "Dimensions": [{"Name": "FunctionName", "Value": sc.function_name}], "Value": v, "Unit": unit}
                    for name, (v, unit) in values.items()
                ],
            )

    def drive(self) -> None:
        drivers: dict[str, Callable[[ScenarioRun], None]] = {
            "spike": self.drive_spike,
            "failed": self.drive_failed,
            "flap": self.drive_flap,
            "member": self.drive_member,
            "exposure": self.drive_exposure,
            "heartbeat": self.drive_heartbeat,
            "guardrail": self.drive_guardrail,
            "throttled": self.drive_throttled,
            "findings": self.drive_findings,
        }
        for sc in self.scenarios.values():
            drivers[sc.name](sc)
        self.publish_lambda_metrics()
        self.publish_write_exposure()
        for sc in self.scenarios.values():
            # The heartbeat's sweeps go on while the run waits (stopped in cleanup).
            if sc.watch and sc.sweeper is None:
                sc.watch.stop()
        self.data_stopped_at = time.monotonic()
        # Wall-clock (the events' `time`): the function's events of this run are all older; an event
        # about one of this run's keys that is newer came from another run's sweep on the shared emulator.
        self.data_stopped_wall = time.time()
        log(f"==> all scenarios driven at +{self.elapsed():.0f} s; the data stops now")

    # -- waiting
    def poll(self) -> None:
        states = {}
        for page in self.cw.get_paginator("describe_alarms").paginate(AlarmNamePrefix=self.prefix, AlarmTypes=["MetricAlarm"]):
            for a in page["MetricAlarms"]:
                states[a["AlarmName"]] = a["StateValue"]
        now = time.monotonic()
        for ta in self.test_alarms:
            state = states.get(ta.name, "MISSING")
            if not ta.history or ta.history[-1][0] != state:
                ta.history.append((state, now))
                if ta.history[-1][0] != "INSUFFICIENT_DATA":
                    log(f"    +{self.elapsed(now):5.0f} s  {ta.name}: {state}")

    def evaluate_stand_ins(self) -> None:
        """The metric-math alarms' scheduler (see STAND_IN_EVALUATION), in a thread from their creation
        to the clean-up, as LocalStack's runs for the others: each alarm when it was created and then
        every Period x EvaluationPeriods."""
        cw = client("cloudwatch")  # its own client: boto3 clients are not shared across threads here
        last: dict[str, str] = {}
        while not self.stand_in_stop.wait(0.5):
            now = time.monotonic()
            for ta in self.test_alarms:
                if not ta.stand_in or now < ta.next_evaluation:
                    continue
                try:
                    self.evaluate_stand_in(cw, ta, last)
                except Exception as err:  # noqa: BLE001 - reported; the alarm then never changes state
                    log(f"    (stand-in evaluation of {ta.name} failed: {err})")
                    ta.stand_in_evaluations.append({"at": self.elapsed(), "error": str(err)})
                while ta.next_evaluation <= now:
                    ta.next_evaluation += ta.every

    def evaluate_stand_in(self, cw: Any, ta: TestAlarm, last: dict[str, str]) -> None:
        """One evaluation of a metric-math alarm."""
        state, values = evaluate_metric_math(cw, ta.request)
        ta.stand_in_evaluations.append({"at": self.elapsed(), "state": state, "datapoints": values})
        if last.get(ta.name, "INSUFFICIENT_DATA") == state:
            return
        shown = ", ".join("-" if v is None else f"{v:g}" for v in values)
        breaching = [v for v in values if v is not None and _COMPARE[ta.request["ComparisonOperator"]](v, ta.request["Threshold"])]
        reason = (
            f"Threshold Crossed: {len(breaching)} datapoint [{', '.join(f'{v:g}' for v in breaching)}] was "
            f"{ta.request['ComparisonOperator']} the threshold ({ta.request['Threshold']:g})"
            if state == "ALARM"
            else f"Threshold Crossed: no datapoint breached the threshold ({ta.request['Threshold']:g}) in [{shown}]"
        )
        cw.set_alarm_state(
            AlarmName=ta.name,
            StateValue=state,
            StateReason=reason + " (metric math evaluated by infra/tests/alarm_harness.py)",
            StateReasonData=json.dumps({"version": "1.0", "queryDate": time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime()),
                                        "evaluatedDatapoints": [{"value": v} for v in values if v is not None],
                                        "threshold": ta.request["Threshold"]}),
        )
        last[ta.name] = state

    def done(self) -> bool:
        for ta in self.test_alarms:
            if ta.expect_alarm:
                t_alarm = ta.first("ALARM")
                if t_alarm is None:
                    return False
                t_ok = ta.first("OK", after=t_alarm)
                if self.wait_ok and t_ok is None:
                    return False
                # The heartbeat must also stay OK through a further evaluation while sweeps complete.
                if self.wait_ok and ta.alarm.key in ONLY_IN and t_ok is not None and time.monotonic() - t_ok < ta.every + 10:
                    return False
            elif ta.first("OK") is None or (ta.history and ta.history[-1][0] == "ALARM"):
                return False
        return True

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            for sc in self.scenarios.values():
                if sc.dlq_purged_at is None and any(
                    ta.scenario == sc.name and ta.alarm.key == "DLQ-not-empty" and ta.first("ALARM") for ta in self.test_alarms
                ):
                    self.sqs.purge_queue(QueueUrl=sc.queue["url"])
                    sc.dlq_purged_at = time.monotonic()
                    log(f"    +{self.elapsed():5.0f} s  {sc.queue['name']} purged (the operator redrove it)")
                if sc.sweep_dlq_purged_at is None and any(
                    ta.scenario == sc.name and ta.alarm.key == "sweep-DLQ-not-empty" and ta.first("ALARM") for ta in self.test_alarms
                ):
                    self.sqs.purge_queue(QueueUrl=sc.sweep_dlq["url"])
                    sc.sweep_dlq_purged_at = time.monotonic()
                    log(f"    +{self.elapsed():5.0f} s  {sc.sweep_dlq['name']} purged (the operator redrove it)")
            if self.done() or time.monotonic() > deadline:
                return
            time.sleep(POLL_SECONDS)

    def read_notifications(self) -> None:
        empty = 0
        while empty < 2:
            msgs = self.sqs.receive_message(QueueUrl=self.notify_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            if not msgs:
                empty += 1
                continue
            for m in msgs:
                envelope = json.loads(m["Body"])
                try:
                    alarm = json.loads(envelope.get("Message", ""))
                except ValueError:
                    alarm = {}
                if isinstance(alarm, dict):
                    self.notifications.append({"envelope": envelope, "alarm": alarm})
                else:
                    # Not an alarm: a message of an exposure rule (a JSON string).
                    self.rule_messages.append(envelope)
                self.sqs.delete_message(QueueUrl=self.notify_queue_url, ReceiptHandle=m["ReceiptHandle"])
        if self.capture_queue_url:
            empty = 0
            while empty < 2:
                msgs = self.sqs.receive_message(QueueUrl=self.capture_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
                empty = 0 if msgs else empty + 1
                for m in msgs:
                    self.guard_events.append(json.loads(m["Body"]))
                    self.sqs.delete_message(QueueUrl=self.capture_queue_url, ReceiptHandle=m["ReceiptHandle"])

    def check_dashboards(self) -> None:
        for sc in self.scenarios.values():
            metrics = []
            for page in self.cw.get_paginator("list_metrics").paginate(Namespace=sc.namespace):
                metrics.extend(page["Metrics"])
            self.listed_metrics[sc.name] = metrics
        for src, lid, props in self.dashboards:
            dep = self.deployments[(self.scenario_names[0], src.label)]
            body = dep.dashboard_body(props)
            name = str(dep.resolve(props.get("DashboardName", f"{dep.stack}-{REGION}")))
            if not name.startswith(dep.stack):
                name = f"{dep.stack}-{REGION}"
            out = self.cw.put_dashboard(DashboardName=name, DashboardBody=json.dumps(body))
            self.created_dashboards.append(name)
            back = json.loads(self.cw.get_dashboard(DashboardName=name)["DashboardBody"])
            self.dashboard_results.append(
                {"where": f"{src.label}:{lid}", "name": name, "validation": out.get("DashboardValidationMessages", []),
                 "read_back_equal": back == body, "metrics": dashboard_metrics(body), "deployment": dep}
            )

    def cleanup(self) -> None:
        self.stand_in_stop.set()
        if self.stand_in_thread:
            self.stand_in_thread.join(30)
        for sc in self.scenarios.values():
            if sc.sweeper:
                sc.sweeper.join(120)
        for sc in self.scenarios.values():
            if sc.watch:
                sc.watch.stop()
        for name, bus in self.created_rules:
            try:
                ids = [t["Id"] for t in self.events.list_targets_by_rule(Rule=name, EventBusName=bus).get("Targets", [])]
                if ids:
                    self.events.remove_targets(Rule=name, EventBusName=bus, Ids=ids)
                self.events.delete_rule(Name=name, EventBusName=bus)
            except Exception as err:  # noqa: BLE001 - clean-up is best effort, reported
                log(f"    (clean-up: delete_rule {name}: {err})")
        if self.drift_bus:
            try:
                self.events.delete_event_bus(Name=self.drift_bus["name"])
            except Exception as err:  # noqa: BLE001 - clean-up is best effort, reported
                log(f"    (clean-up: delete_event_bus {self.drift_bus['name']}: {err})")
        names = [ta.name for ta in self.test_alarms]
        for i in range(0, len(names), 100):
            try:
                self.cw.delete_alarms(AlarmNames=names[i : i + 100])
            except Exception as err:  # noqa: BLE001 - clean-up is best effort, reported
                log(f"    (clean-up: delete_alarms: {err})")
        if self.created_dashboards:
            try:
                self.cw.delete_dashboards(DashboardNames=self.created_dashboards)
            except Exception as err:  # noqa: BLE001
                log(f"    (clean-up: delete_dashboards: {err})")
        for url in self.created_queues:
            try:
                self.sqs.delete_queue(QueueUrl=url)
            except Exception as err:  # noqa: BLE001
                log(f"    (clean-up: delete_queue: {err})")
        if self.topic_arn:
            try:
                self.sns.delete_topic(TopicArn=self.topic_arn)
            except Exception as err:  # noqa: BLE001
                log(f"    (clean-up: delete_topic: {err})")
        # The keys: pending deletion, so that nothing sweeps them again.
        for sc in self.scenarios.values():
            for key_id in sc.key_ids:
                for region in (REPLICA_REGION, REGION):
                    try:
                        client("kms", region).schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
                    except Exception:  # noqa: BLE001, S110 - best effort
                        pass

    def execute(self, timeout: float = 600) -> None:
        # Interrupted or stopped: clean up as on any other failure, so that no function is left
        # serving on its port and no alarm on the emulator. SIGINT is set explicitly: a shell's
        # background job (infra-test.sh runs this check as one) starts with it ignored.
        signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            self.setup()
            self.start_functions()
            self.drive()
            driven()
            self.wait(timeout)
            self.read_notifications()
            self.check_dashboards()
            self.write_report()
        finally:
            driven()
            self.cleanup()

    # -- results
    def timings(self, ta: TestAlarm) -> dict[str, float | None]:
        sc = self.scenarios[ta.scenario]
        t_data = sc.data_sent_at
        t_alarm = ta.first("ALARM")
        t_ok = ta.first("OK", after=t_alarm) if t_alarm else None
        # For the DLQ alarm the data stops when the queue is emptied.
        t_stop = sc.dlq_purged_at if ta.alarm.key == "DLQ-not-empty" and sc.dlq_purged_at else self.data_stopped_at
        if ta.alarm.key == "sweep-DLQ-not-empty" and sc.sweep_dlq_purged_at:
            t_stop = sc.sweep_dlq_purged_at
        if ta.alarm.key == "SweepCompleted-heartbeat":
            # Inverted: ALARM from the alarm's creation (no data), OK after the first sweep.
            return {
                "to_alarm": (t_alarm - ta.created_at) if t_alarm else None,
                "to_ok": (t_ok - sc.first_data_at) if t_ok and sc.first_data_at else None,
            }
        return {
            "to_alarm": (t_alarm - t_data) if t_alarm and t_data else None,
            "to_ok": (t_ok - t_stop) if t_ok and t_stop else None,
        }

    def report_lines(self) -> list[str]:
        lines = []
        for ta in sorted(self.test_alarms, key=lambda x: (not x.expect_alarm, x.alarm.key, x.scenario, x.alarm.source.tool)):
            states = " -> ".join(s for s, _ in ta.history)
            t = self.timings(ta)
            extra = ""
            if ta.expect_alarm:
                if ta.alarm.key == "SweepCompleted-heartbeat":
                    extra = f"  ALARM {t['to_alarm']:.0f} s after its creation (no sweep)" if t["to_alarm"] is not None else "  never ALARM"
                    extra += f", OK {t['to_ok']:.0f} s after the first sweep" if t["to_ok"] is not None else ", never OK"
                    t_ok = ta.first("OK", after=ta.first("ALARM") or 0.0)
                    if t_ok is not None and "ALARM" not in [s for s, t_ in ta.history if t_ > t_ok]:
                        extra += ", stayed OK while sweeps completed"
                else:
                    extra = f"  ALARM {t['to_alarm']:.0f} s after the data" if t["to_alarm"] is not None else "  never ALARM"
                    extra += f", OK {t['to_ok']:.0f} s after it stopped" if t["to_ok"] is not None else ", never back to OK"
                if ta.alarm.key in STAND_IN:
                    extra += "  (stand-in Lambda datum)"
                if ta.stand_in:
                    extra += "  (metric math evaluated by the harness)"
            lines.append(f"{'FIRE' if ta.expect_alarm else 'QUIET'} {ta.scenario:6} {ta.alarm.source.tool} {ta.alarm.key:22} {states}{extra}")
        for key, why in NOT_DRIVABLE.items():
            lines.append(f"NOT DRIVEN {key}: {why}")
        return lines

    def write_report(self) -> None:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        lines = self.report_lines()
        (OUT_DIR / "report.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (OUT_DIR / "invocations.json").write_text(
            json.dumps({s.name: [i.__dict__ for i in s.invocations] for s in self.scenarios.values()}, indent=2) + "\n", encoding="utf-8"
        )
        (OUT_DIR / "notifications.json").write_text(
            json.dumps([n["envelope"] for n in self.notifications] + self.rule_messages, indent=2) + "\n", encoding="utf-8"
        )
        (OUT_DIR / "guard-events.json").write_text(json.dumps(self.guard_events, indent=2) + "\n", encoding="utf-8")
        log("==> alarms (state changes observed):")
        for line in lines:
            log("    " + line)


def own_events(run: Run) -> list[dict[str, Any]]:
    """The events this run's functions put on the drift bus about this run's keys (another run's sweep
    of the same Region may publish about them later)."""
    own = {f"arn:aws:kms:{REPLICA_REGION}:{ACCOUNT}:key/{k}" for sc in run.scenarios.values() for k in sc.key_ids}
    found = []
    for e in run.guard_events:
        stamp = e.get("time")
        when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp() if stamp else float("inf")
        if e.get("resources") and set(e["resources"]) <= own and when <= run.data_stopped_wall + 1:
            found.append(e)
    return found


def own_messages(run: Run) -> list[str]:
    """The rules' messages (SNS envelopes' text) sent while this run drove its functions: a later one
    may come from another run's sweep of the same Region, about one of this run's keys."""
    texts = []
    for m in run.rule_messages:
        stamp = datetime.datetime.strptime(m["Timestamp"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp()
        if stamp <= run.data_stopped_wall + 5:
            texts.append(json.loads(m["Message"]))
    return texts


def _outcomes(inv: Invocation) -> list[dict[str, Any]]:
    return inv.body.get("outcomes", []) if isinstance(inv.body, dict) else []


def operator_view(note: dict[str, Any]) -> str:
    """A notification as the person subscribed to the topic reads it (e-mail subject and body)."""
    a, env = note["alarm"], note["envelope"]
    trig = a.get("Trigger", {})
    dims = ", ".join(f"{d.get('name')}={d.get('value')}" for d in trig.get("Dimensions", [])) or "none (fleet total)"
    return "\n".join(
        [
            f"Subject: {env.get('Subject', '')}",
            f"  Alarm:       {a.get('AlarmName')}",
            f"  State:       {a.get('OldStateValue')} -> {a.get('NewStateValue')} at {a.get('StateChangeTime')}",
            f"  Reason:      {a.get('NewStateReason')}",
            f"  Description: {a.get('AlarmDescription')}",
            f"  Metric:      {trig.get('Namespace')} {trig.get('MetricName')} ({trig.get('Statistic')} over {trig.get('Period')} s, "
            f"{trig.get('ComparisonOperator')} {trig.get('Threshold')}), dimensions: {dims}",
        ]
    )


def runbook_page(name: str) -> str:
    """The text of the runbook page docs/src/runbook/<name>.md ('' if there is none)."""
    page = ROOT / "docs" / "src" / "runbook" / f"{name}.md"
    return page.read_text(encoding="utf-8").strip() if page.is_file() else ""


def demo() -> int:
    """make demo-alarms: the SAM stack's spike alarm firing end to end, as an operator sees it."""
    problem = emulator_problem()
    if problem:
        log(f"error: the local AWS emulator is not reachable: {problem}")
        return 1
    run = Run(scenarios=("spike",), tools=("sam",), wait_ok=False)
    spike = [a for a in run.alarms if a.key == "AutoFixApplied-spike"]
    if not spike:
        log("error: no AutoFixApplied-spike alarm in the SAM template")
        return 1
    # Only the spike alarm (the others stay quiet in this scenario and would only add noise).
    run.alarms = spike
    try:
        run.setup()
        run.start_functions()
        run.drive()
        log("==> waiting for the alarm's next evaluation (every 60 s on the emulator)")
        run.wait(240)
        run.read_notifications()
    finally:
        run.cleanup()
    fired = [n for n in run.notifications if n["alarm"].get("NewStateValue") == "ALARM"]
    if not fired:
        log("error: no ALARM notification arrived")
        return 1
    ta = run.test_alarms[0]
    t = run.timings(ta)
    print()
    print(f"The alarm went to ALARM {t['to_alarm']:.0f} s after the function published AutoFixApplied; the topic delivered:")
    print()
    print(operator_view(fired[0]))
    m = re.search(r"Runbook: docs/src/runbook/([a-z0-9-]+)\.md", fired[0]["alarm"].get("AlarmDescription", ""))
    if m:
        entry = runbook_page(m.group(1))
        print()
        print(f"The runbook page it points to (docs/src/runbook/{m.group(1)}.md):")
        print("\n".join("  " + line for line in entry.splitlines()))
    print()
    print("Raw SNS message (as the SQS subscriber received it):")
    print(json.dumps(fired[0]["envelope"], indent=2))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["demo"]:
        sys.exit(demo())
    print(__doc__)
    sys.exit(2)
