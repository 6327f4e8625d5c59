"""Copy the infra stack's outputs into one stage of ``.chalice/config.json``.

Usage (docs/deploy.md, step 3)::

    aws cloudformation describe-stacks --stack-name atb-dev \
        --query "Stacks[0].Outputs" --output json > /tmp/atb-dev-outputs.json
    python infra/fill_chalice_config.py --stage dev /tmp/atb-dev-outputs.json

It sets, for that stage only: ``subnet_ids`` (from ``SubnetIds``), ``security_group_ids`` (from
``LambdaSecurityGroupId``) and the environment variables ``DATABASE_SECRET_ARN`` (from
``DatabaseSecretArn``) and ``ATB_API_TOKENS_SECRET_ARN`` (from ``ApiTokensSecretArn``). Everything else in the
file is left as it is. Standard library only, so it runs before the project is installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REQUIRED_OUTPUTS = ("SubnetIds", "LambdaSecurityGroupId", "DatabaseSecretArn", "ApiTokensSecretArn")
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / ".chalice" / "config.json"


def outputs_by_key(raw: Any) -> dict[str, str]:
    """Accept either ``Stacks[0].Outputs`` (a list) or the whole ``describe-stacks`` answer."""
    if isinstance(raw, dict) and "Stacks" in raw:
        raw = raw["Stacks"][0].get("Outputs", [])
    if not isinstance(raw, list):
        raise ValueError("expected the stack's Outputs list (describe-stacks --query 'Stacks[0].Outputs')")
    return {str(o["OutputKey"]): str(o["OutputValue"]) for o in raw}


def apply_outputs(config: dict[str, Any], stage: str, outputs: dict[str, str]) -> dict[str, Any]:
    missing = [k for k in REQUIRED_OUTPUTS if k not in outputs]
    if missing:
        raise ValueError(f"stack outputs lack {', '.join(missing)}")
    stage_cfg = config.setdefault("stages", {}).setdefault(stage, {})
    stage_cfg["subnet_ids"] = [s.strip() for s in outputs["SubnetIds"].split(",") if s.strip()]
    stage_cfg["security_group_ids"] = [outputs["LambdaSecurityGroupId"]]
    env = stage_cfg.setdefault("environment_variables", {})
    env["DATABASE_SECRET_ARN"] = outputs["DatabaseSecretArn"]
    env["ATB_API_TOKENS_SECRET_ARN"] = outputs["ApiTokensSecretArn"]
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, choices=["dev", "prod"])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("outputs", type=Path, help="JSON file with the stack outputs ('-' for stdin)")
    args = parser.parse_args(argv)

    text = sys.stdin.read() if str(args.outputs) == "-" else args.outputs.read_text()
    try:
        outputs = outputs_by_key(json.loads(text))
        config = apply_outputs(json.loads(args.config.read_text()), args.stage, outputs)
    except (ValueError, KeyError, IndexError) as exc:
        sys.stderr.write(f"fill_chalice_config: {exc}\n")
        return 2
    args.config.write_text(json.dumps(config, indent=2) + "\n")
    sys.stdout.write(f"updated stage {args.stage!r} in {args.config}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
