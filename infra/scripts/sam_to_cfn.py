"""Translates SAM templates to plain CloudFormation JSON, offline.

checkov runs no IAM checks on a SAM function's inline policies, so the SAM templates are
scanned in their translated form; the same translation, with the real code location, gives
a transform-free template for CloudFormation StackSets.
Templates without the SAM transform are written as they are.

    python infra/scripts/sam_to_cfn.py [--code-bucket B --code-key K] OUT_DIR TEMPLATE.yaml [...]

Writes OUT_DIR/<template-stem>.cfn.json for each template. Without --code-bucket, a local
CodeUri becomes a placeholder S3 location (good for linting, not for deploying). A bucket
containing ${...} (e.g. 'artifacts-${AWS::Region}-${AWS::AccountId}') is emitted as Fn::Sub.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cfn_yaml  # noqa: E402

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
# Local CodeUri/ContentUri are uploaded by `sam package`; the translator only accepts S3 URIs.
PLACEHOLDER_CODE = "s3://placeholder-bucket/kms-replica-guard.zip"


def _has_sam_transform(template: dict[str, Any]) -> bool:
    transform = template.get("Transform")
    transforms = transform if isinstance(transform, list) else [transform]
    return SAM_TRANSFORM in transforms


def translate(template: dict[str, Any], code: Any = PLACEHOLDER_CODE) -> dict[str, Any]:
    """Returns the CloudFormation the SAM transform makes of `template`; local CodeUris become `code`."""
    if not _has_sam_transform(template):
        return template
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            if not props["CodeUri"].startswith("s3://"):
                props["CodeUri"] = code
    source = copy.deepcopy(template)
    # A Region-only session: no credentials and no network are needed because the templates
    # use no SAM policy templates or managed policy names.
    session = boto3.Session(region_name="us-east-1")
    translator = Translator(managed_policy_map={}, sam_parser=Parser(), boto_session=session)
    cfn = translator.translate(template, parameter_values={}, passthrough_metadata=False)
    _restore_event_invoke_refs(source, cfn)
    return cfn


def _restore_event_invoke_refs(source: dict[str, Any], cfn: dict[str, Any]) -> None:
    """Puts the parameter Refs of EventInvokeConfig back.

    The transform substitutes parameter values into EventInvokeConfig (CloudFormation runs it
    with the stack's actual values); offline that means the defaults, which would silently
    ignore the stack's MaxRetryAttempts / MaxEventAgeSeconds.
    """
    for name, resource in source.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        config = (resource.get("Properties") or {}).get("EventInvokeConfig") or {}
        target = cfn["Resources"].get(f"{name}EventInvokeConfig")
        if target is None:
            continue
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if isinstance(config.get(key), dict):
                target["Properties"][key] = config[key]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code-bucket", help="S3 bucket of the function zip (may contain ${AWS::Region})")
    parser.add_argument("--code-key", help="S3 key of the function zip")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("templates", nargs="+", type=Path)
    args = parser.parse_args(argv[1:])
    if bool(args.code_bucket) != bool(args.code_key):
        parser.error("--code-bucket and --code-key go together")
    code: Any = PLACEHOLDER_CODE
    if args.code_bucket:
        bucket = {"Fn::Sub": args.code_bucket} if "${" in args.code_bucket else args.code_bucket
        code = {"Bucket": bucket, "Key": args.code_key}
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in args.templates:
        cfn = translate(cfn_yaml.load(path), code)
        target = out_dir / f"{path.stem}.cfn.json"
        target.write_text(json.dumps(cfn, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        print(f"{path} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
