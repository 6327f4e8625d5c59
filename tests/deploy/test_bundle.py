"""The deployment package: `chalice package --stage prod` builds, holds what Lambda needs and nothing dev-only,
stays within the size budget, and its SAM template passes cfn-lint."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("atb_bench_bundle", ROOT / "bench" / "bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    bench = load_bench()
    out = bench.package(tmp_path_factory.mktemp("package") / "out", "prod")
    return bench, out


@pytest.mark.slow
def test_the_prod_package_holds_the_app_migrations_and_data_and_no_dev_only_package(
    packaged: tuple[Any, Path],
) -> None:
    bench, out = packaged
    report = bench.inspect_zip(out / "deployment.zip")
    assert report.dev_only == []
    for required in ("app.py", "migrations/env.py", "migrations/alembic.ini", "chalicelib/data/BTCUSDT_1h.csv.gz"):
        assert required in report.names, required
    assert any(n.startswith("migrations/versions/") and n.endswith(".py") for n in report.names)
    assert not any(n.startswith(("tests/", "bench/", "vendor/", "infra/")) for n in report.names)
    assert report.zip_bytes <= bench.ZIP_BUDGET_MB * bench.MB
    assert report.unzipped_bytes <= bench.UNZIPPED_BUDGET_MB * bench.MB


@pytest.mark.slow
def test_the_packaged_sam_template_passes_cfn_lint_and_declares_the_three_functions(
    packaged: tuple[Any, Path],
) -> None:
    import json

    _, out = packaged
    template = json.loads((out / "sam.json").read_text())
    functions = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    assert {"APIHandler", "Tick", "Migrate"} <= set(functions)
    assert functions["Tick"]["Properties"]["ReservedConcurrentExecutions"] == 1
    assert functions["Tick"]["Properties"]["VpcConfig"]["SubnetIds"]
    lint = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(out / "sam.json")],
                          capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_dev_only_list_recognises_dist_info_and_module_files() -> None:
    bench = load_bench()
    assert bench._package_name("botocore-1.40.0.dist-info") == "botocore"
    assert bench._package_name("typing_extensions.py") == "typing_extensions"
    assert bench._package_name("_pytest") in bench.DEV_ONLY
