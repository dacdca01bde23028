"""Loads CloudFormation YAML, short-form tags included, into the JSON form CloudFormation uses.

`!Ref X` becomes {"Ref": "X"}, `!GetAtt A.B` {"Fn::GetAtt": ["A", "B"]}, `!Condition C`
{"Condition": "C"}, any other `!Name v` {"Fn::Name": v}. Used by sam_to_cfn.py and by the
tests in infra/tests, so that both read the templates exactly as they are in the repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader plus CloudFormation's intrinsic-function tags."""


def _intrinsic(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load(path: str | Path) -> dict[str, Any]:
    """Parses a CloudFormation / SAM YAML template."""
    with open(path, encoding="utf-8") as fh:
        doc = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a CloudFormation template (top level is not a mapping)")
    return doc
