"""The Lambda bundle's requirements are exactly the project's pinned runtime dependencies."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_BUNDLED = {"chalice", "boto3"}  # chalice adds its own runtime; the Lambda runtime provides boto3


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line!r} is not pinned with =="
            pins[name.strip().lower()] = version.strip()
    return pins


def test_requirements_txt_pins_exactly_the_runtime_dependencies_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _pins(project["dependencies"])
    bundled = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert bundled == {k: v for k, v in runtime.items() if k not in NOT_BUNDLED}


def test_no_dev_only_package_is_in_the_bundle_requirements() -> None:
    dev = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"])
    bundled = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert not {name.split("[")[0] for name in dev} & set(bundled)
