"""The organisation guardrails (infra/guardrails/) agree with the stacks and the function.

- the JSON documents are the CloudFormation template's policies (infra/guardrails/guardrails.yaml)
  evaluated for the example values of docs/src/prevention.md (the CDK Guardrails stack includes the
  template itself: infra/cdk/lib/guardrails-stack.ts);
- their tag keys are the function's defaults (EXCLUDE_TAG, BASELINE_TAG in src/ and crates/) and
  the stacks' ExcludeTag/BaselineTag defaults; their role names are the member role's default name
  and match the names CloudFormation gives the hub role (SAM and CDK logical ids); the write they
  reserve is the stacks' own (kms:PutKeyPolicy where kms:MultiRegionKeyType is REPLICA); the hub
  resources they protect match the names CloudFormation gives them; the hub role is denied every
  action outside the guard's function (lambda:SourceFunctionArn), except the SQS and kms:Decrypt
  calls the Lambda service makes with it, and no one but the deployment roles may pass it or create
  a function named like the guard's;
- each fits the 5,120-character limit of an organisation policy.

Needs infra/cdk/cdk.out (`make synth`) and infra/.build/sam (sam_to_cfn.py).
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cfn_yaml  # noqa: E402
import test_templates as templates  # noqa: E402

_load_json = templates._load_json

GUARDRAILS = ROOT / "infra" / "guardrails"
TEMPLATE = GUARDRAILS / "guardrails.yaml"
SAM_HUB = ROOT / "infra" / ".build" / "sam" / "template.cfn.json"
SAM_MEMBER = ROOT / "infra" / "sam" / "member.yaml"
CDK_HUB = ROOT / "infra" / "cdk" / "cdk.out" / "Hub.template.json"
CDK_MEMBER = ROOT / "infra" / "cdk" / "cdk.out" / "Member.template.json"

# The example values of docs/src/prevention.md.
EXAMPLE = {
    "HubAccountId": "999988887777",
    "PipelineRoleArns": "arn:aws:iam::*:role/kms-key-pipeline",
    "TargetIds": "ou-ab12-workloads",
    "OrganizationId": "o-a1b2c3d4e5",
}
DOCUMENTS = {
    "ReserveReplicaPolicies": "scp-reserve-replica-policies.json",
    "ProtectTheGuard": "scp-protect-the-guard.json",
    "KmsInsideTheOrganization": "rcp-kms-inside-organization.json",
}
POLICY_SIZE_LIMIT = 5120


class Evaluator(templates.SamEvaluator):
    """SamEvaluator that knows CommaDelimitedList parameters (a Ref is a list)."""

    def __call__(self, v: Any) -> Any:
        if isinstance(v, dict) and set(v) == {"Ref"}:
            param = self.template["Parameters"].get(v["Ref"], {})
            if param.get("Type") == "CommaDelimitedList":
                return self.values[v["Ref"]].split(",")
        return super().__call__(v)


def statements(policy: dict[str, Any]) -> dict[str, Any]:
    return {s["Sid"]: s for s in policy["Statement"]}


def role_statements(template: dict[str, Any], resource_type: str = "AWS::IAM::Role") -> dict[str, Any]:
    found = {}
    for r in template["Resources"].values():
        if r["Type"] == resource_type:
            for p in r["Properties"].get("Policies", []):
                found.update(statements(p["PolicyDocument"]))
    return found


def logical_id(template: dict[str, Any], type_: str, prefix: str) -> str:
    ids = [k for k, r in template["Resources"].items() if r["Type"] == type_ and k.startswith(prefix)]
    if len(ids) != 1:
        raise AssertionError(f"expected one {type_} named {prefix}*, found {ids}")
    return ids[0]


def generated_name(stack: str, lid: str, lower: bool = False) -> str:
    """The name CloudFormation gives a resource without one: <stack>-<logical id>-<suffix>."""
    name = f"{stack}-{lid}-1A2B3C4D5E6F"
    return name.lower() if lower else name


class GuardrailDocumentsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.template = cfn_yaml.load(TEMPLATE)
        cls.docs = {k: json.loads((GUARDRAILS / f).read_text(encoding="utf-8")) for k, f in DOCUMENTS.items()}
        cls.evaluated = Evaluator(cls.template, **EXAMPLE)

    def policy(self, name: str) -> dict[str, Any]:
        return self.evaluated(self.template["Resources"][name]["Properties"]["Content"])

    def test_the_json_documents_are_the_templates_policies(self) -> None:
        for name, doc in self.docs.items():
            with self.subTest(policy=name):
                self.assertEqual(self.policy(name), doc)
        self.assertEqual(
            {n: r["Properties"]["Type"] for n, r in self.template["Resources"].items()},
            {"ReserveReplicaPolicies": "SERVICE_CONTROL_POLICY", "ProtectTheGuard": "SERVICE_CONTROL_POLICY",
             "KmsInsideTheOrganization": "RESOURCE_CONTROL_POLICY"},
        )

    def test_each_fits_an_organisation_policy(self) -> None:
        for name, doc in self.docs.items():
            with self.subTest(policy=name):
                self.assertLessEqual(len(json.dumps(doc, separators=(",", ":"))), POLICY_SIZE_LIMIT)

    def test_the_tag_keys_are_the_functions_and_the_stacks(self) -> None:
        tags = statements(self.docs["ReserveReplicaPolicies"])["OnlyPipelinesSetTheGuardsTags"]
        keys = tags["Condition"]["ForAnyValue:StringEquals"]["aws:TagKeys"]
        self.assertEqual(keys, ["kms-replica-guard:exclude", "kms-replica-guard:baseline"])
        # The function's tag keys, as the contract declares them (cargo xtask docs, from the code);
        # the CDK app takes its defaults from the same contract.
        contract = json.loads((ROOT / "infra" / "contract.json").read_text(encoding="utf-8"))
        self.assertEqual([contract["tag_keys"]["exclude"], contract["tag_keys"]["baseline"]], keys)
        sam = _load_json(SAM_HUB)["Parameters"]
        self.assertEqual([sam["ExcludeTag"]["Default"], sam["BaselineTag"]["Default"]], keys)
        config = (ROOT / "infra" / "cdk" / "lib" / "config.ts").read_text(encoding="utf-8")
        self.assertIn("excludeTag: contract.tag_keys.exclude", config)
        self.assertIn("baselineTag: contract.tag_keys.baseline", config)
        params = self.template["Parameters"]
        self.assertEqual([params["ExcludeTag"]["Default"], params["BaselineTag"]["Default"]], keys)
        # The guard never tags (its roles have no kms:TagResource): only pipelines are exempted.
        self.assertEqual(tags["Condition"]["ArnNotLike"]["aws:PrincipalArn"], [EXAMPLE["PipelineRoleArns"]])
        for where, roles in (("SAM hub", role_statements(_load_json(SAM_HUB))), ("member", role_statements(cfn_yaml.load(SAM_MEMBER)))):
            actions = {a for s in roles.values() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
            self.assertFalse(actions & {"kms:TagResource", "kms:UntagResource"}, where)

    def test_the_reserved_write_is_the_stacks_own(self) -> None:
        deny = statements(self.docs["ReserveReplicaPolicies"])["OnlyTheGuardWritesReplicaKeyPolicies"]
        self.assertEqual(deny["Condition"]["StringEquals"], {"kms:MultiRegionKeyType": "REPLICA"})
        for where, roles in (
            ("SAM hub", role_statements(_load_json(SAM_HUB))),
            ("CDK hub", role_statements(_load_json(CDK_HUB))),
            ("SAM member", role_statements(cfn_yaml.load(SAM_MEMBER))),
            ("CDK member", role_statements(_load_json(CDK_MEMBER))),
        ):
            with self.subTest(stack=where):
                write = roles["RewriteReplicaKeyPolicies"]
                self.assertEqual(write["Action"], deny["Action"])
                self.assertEqual(write["Condition"]["StringEquals"], deny["Condition"]["StringEquals"])

    def test_the_exempted_roles_are_the_guards(self) -> None:
        exempt = statements(self.docs["ReserveReplicaPolicies"])["OnlyTheGuardWritesReplicaKeyPolicies"]["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
        hub, member, *pipelines = exempt
        self.assertEqual(pipelines, [EXAMPLE["PipelineRoleArns"]])
        member_default = cfn_yaml.load(SAM_MEMBER)["Parameters"]["MemberRoleName"]["Default"]
        self.assertEqual(member, f"arn:aws:iam::*:role/{member_default}")
        self.assertEqual(_load_json(CDK_MEMBER)["Parameters"]["MemberRoleName"]["Default"], member_default)
        hub_pattern = hub.removeprefix(f"arn:aws:iam::{EXAMPLE['HubAccountId']}:role/")
        for where, template in (("SAM", _load_json(SAM_HUB)), ("CDK", _load_json(CDK_HUB))):
            with self.subTest(tool=where):
                role = generated_name("kms-replica-guard", logical_id(template, "AWS::IAM::Role", "RemediatorRole"))[:64]
                self.assertTrue(fnmatch.fnmatchcase(role, hub_pattern), f"{role} !~ {hub_pattern}")

    def test_the_protected_resources_are_named_as_cloudformation_names_them(self) -> None:
        protect = statements(self.docs["ProtectTheGuard"])
        resources = protect["ProtectTheGuardsHubResources"]["Resource"]
        patterns = {r.split(":")[2]: r for r in resources if "StackSet-" not in r}
        for where, template in (("SAM", _load_json(SAM_HUB)), ("CDK", _load_json(CDK_HUB))):
            with self.subTest(tool=where):
                fn = generated_name("kms-replica-guard", logical_id(template, "AWS::Lambda::Function", "Function"))
                self.assertTrue(fnmatch.fnmatchcase(f"arn:aws:lambda:us-east-1:111122223333:function:{fn}"[:200], patterns["lambda"]))
                bucket = generated_name("kms-replica-guard", logical_id(template, "AWS::S3::Bucket", "BackupBucket"), lower=True)
                self.assertTrue(fnmatch.fnmatchcase(f"arn:aws:s3:::{bucket}", patterns["s3"]))
                for lid, r in template["Resources"].items():
                    if r["Type"] == "AWS::SQS::Queue":
                        self.assertTrue(fnmatch.fnmatchcase(f"arn:aws:sqs:us-east-1:111122223333:{generated_name('kms-replica-guard', lid)}", patterns["sqs"]), lid)
                    if r["Type"] == "AWS::CloudWatch::Alarm":
                        name = r["Properties"]["AlarmName"]
                        name = name.get("Fn::Sub", name) if isinstance(name, dict) else name
                        name = re.sub(r"^\$\{AWS::StackName\}", "kms-replica-guard", name)
                        self.assertTrue(fnmatch.fnmatchcase(f"arn:aws:cloudwatch:us-east-1:111122223333:alarm:{name}", patterns["cloudwatch"]), name)
        roles = protect["ProtectTheGuardsRoles"]["Resource"]
        self.assertIn("arn:aws:iam::*:role/kms-replica-guard-member", roles)

    def test_the_hub_role_works_in_the_guards_function_only(self) -> None:
        protect = statements(self.docs["ProtectTheGuard"])
        only = protect["TheHubRoleWorksInTheGuardsFunctionOnly"]
        self.assertEqual((only["Effect"], only["Resource"]), ("Deny", "*"))
        self.assertNotIn("Action", only, "every action but the Lambda service's own calls (NotAction)")
        # The hub role, as the replica write reservation names it.
        reserved = statements(self.docs["ReserveReplicaPolicies"])["OnlyTheGuardWritesReplicaKeyPolicies"]["Condition"]["ArnNotLike"]["aws:PrincipalArn"][0]
        self.assertEqual(only["Condition"]["ArnLike"], {"aws:PrincipalArn": reserved})
        # Requests an AWS service makes for the role (forward access sessions) are not the role's own.
        self.assertEqual(only["Condition"]["BoolIfExists"], {"aws:ViaAWSService": "false"})
        # A negated operator: it also matches a request without the key (credentials used outside Lambda).
        (pattern,) = only["Condition"]["ArnNotLike"].values()
        self.assertEqual(list(only["Condition"]["ArnNotLike"]), ["lambda:SourceFunctionArn"])
        self.assertTrue(pattern.startswith(f"arn:aws:lambda:*:{EXAMPLE['HubAccountId']}:function:"), pattern)
        for where, template in (("SAM", _load_json(SAM_HUB)), ("CDK", _load_json(CDK_HUB))):
            with self.subTest(tool=where):
                fn = generated_name("kms-replica-guard", logical_id(template, "AWS::Lambda::Function", "Function"))
                self.assertTrue(fnmatch.fnmatchcase(f"arn:aws:lambda:eu-west-1:{EXAMPLE['HubAccountId']}:function:{fn}", pattern))
                self.assertFalse(fnmatch.fnmatchcase(f"arn:aws:lambda:eu-west-1:{EXAMPLE['HubAccountId']}:function:other-{fn}", pattern))
                # Left out: exactly what the Lambda service does with the role without the key. The SQS
                # actions the role holds (event source polling, on-failure destination; the function's
                # own sweep queue sends among them), and the decryption of the environment.
                allowed = {a for s in role_statements(template).values() if s["Effect"] == "Allow"
                           for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
                self.assertEqual(set(only["NotAction"]), {a for a in allowed if a.startswith("sqs:")} | {"kms:Decrypt"})
                self.assertNotIn("kms:Decrypt", allowed, "the role itself is granted no kms:Decrypt")
        # The pattern is the stack's functions: only the deployment roles create one or pass the hub role.
        self.assertIn("lambda:CreateFunction", protect["ProtectTheGuardsHubResources"]["Action"])
        self.assertIn(pattern.replace(f":{EXAMPLE['HubAccountId']}:", ":*:"), protect["ProtectTheGuardsHubResources"]["Resource"])
        self.assertIn("iam:PassRole", protect["ProtectTheGuardsRoles"]["Action"])
        self.assertIn(reserved.replace(f"::{EXAMPLE['HubAccountId']}:", "::*:"), protect["ProtectTheGuardsRoles"]["Resource"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
