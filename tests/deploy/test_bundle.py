"""The deployment package: `scripts/package.py --stage prod` (`chalice package` + bytecode) builds, holds what
Lambda needs and nothing dev-only, ships unchecked-hash bytecode for the import paths, stays within the size
budget, and its SAM template passes cfn-lint."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
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
    """scripts/package.py --stage prod, through the bench (which also keeps Chalice's own zip next to it)."""
    bench = load_bench()
    out = bench.package(tmp_path_factory.mktemp("package") / "out", "prod")
    return bench, out


def pyc_name(source: str) -> str:
    folder, _, name = source.rpartition("/")
    return (f"{folder}/" if folder else "") + f"__pycache__/{name.removesuffix('.py')}.cpython-311.pyc"


@pytest.mark.slow
def test_the_prod_package_holds_the_app_migrations_and_data_and_no_dev_only_package(
    packaged: tuple[Any, Path],
) -> None:
    bench, out = packaged
    report = bench.inspect_zip(out / "deployment.zip")
    assert report.dev_only == []
    for required in ("app.py", "migrations/env.py", "migrations/alembic.ini", "chalicelib/data/BTCUSDT_1h.csv.gz",
                     "chalicelib/data/ETHUSDT_1h.csv.gz"):
        assert required in report.names, required
    assert any(n.startswith("migrations/versions/") and n.endswith(".py") for n in report.names)
    assert not any(n.startswith(("tests/", "bench/", "vendor/", "infra/")) for n in report.names)
    assert report.unzipped_bytes <= bench.UNZIPPED_BUDGET_MB * bench.MB


@pytest.mark.slow
def test_the_precompiled_zip_is_within_the_zipped_budget(packaged: tuple[Any, Path]) -> None:
    bench, out = packaged
    assert bench.inspect_zip(out / "deployment.zip").zip_bytes <= bench.ZIP_BUDGET_MB * bench.MB


@pytest.mark.slow
def test_chalices_own_zip_stays_within_both_budgets(packaged: tuple[Any, Path]) -> None:
    """What plain `chalice deploy` ships (no bytecode)."""
    bench, out = packaged
    report = bench.inspect_zip(out.parent / bench.PLAIN_ZIP)
    assert report.zip_bytes <= bench.ZIP_BUDGET_MB * bench.MB
    assert report.unzipped_bytes <= bench.UNZIPPED_BUDGET_MB * bench.MB


@pytest.mark.slow
def test_the_zip_ships_unchecked_hash_bytecode_for_the_app_chalicelib_and_sqlalchemy(
    packaged: tuple[Any, Path],
) -> None:
    _, out = packaged
    with zipfile.ZipFile(out / "deployment.zip") as zf:
        infos = {i.filename: i for i in zf.infolist()}
        sources = [n for n in infos if n.endswith(".py")]
        wanted = ["app.py", "migrations/env.py"]
        wanted += [n for n in sources if n.startswith(("chalicelib/", "sqlalchemy/orm/", "sqlalchemy/engine/"))]
        wanted += ["sqlalchemy/__init__.py", "sqlalchemy/dialects/postgresql/pg8000.py", "pydantic/main.py",
                   "ccxt/__init__.py", "ccxt/base/exchange.py", "ccxt/binanceus.py", "ccxt/binance.py",
                   "aws_lambda_powertools/utilities/parameters/secrets.py"]
        assert len([n for n in wanted if n.startswith("chalicelib/")]) > 20
        pycs = [n for n in infos if n.endswith(".pyc")]
        assert all("/__pycache__/" in f"/{n}" and n.endswith(".cpython-311.pyc") for n in pycs), pycs[:5]
        for source in wanted:
            pyc = pyc_name(source)
            assert pyc in infos, f"no bytecode for {source}"
            header = zf.read(pyc)[:16]
            assert header[:4] == importlib.util.MAGIC_NUMBER, pyc
            # PEP 552 flags: bit 0 hash-based, bit 1 check_source; 0b01 = unchecked hash
            assert int.from_bytes(header[4:8], "little") == 0b01, pyc
        # every entry: fixed timestamp, sorted, deflated, a regular-file mode
        names = [i.filename for i in zf.infolist()]
        assert names == sorted(names)
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
        assert all(i.external_attr >> 16 & 0o170000 == 0o100000 for i in zf.infolist())
        # sources stay for tracebacks; unused copies of ccxt stay source-only (size budget)
        assert "ccxt/base/exchange.py" in infos
        assert pyc_name("ccxt/async_support/binance.py") not in infos


@pytest.mark.slow
def test_the_tick_path_imports_nothing_from_source_in_the_unpacked_bundle(
    packaged: tuple[Any, Path], tmp_path: Path,
) -> None:
    """The package's compile list covers the tick path (app + engine + ccxt) and the first API request."""
    bench, out = packaged
    bundle = bench.unpack(out / "deployment.zip", tmp_path / "bundle")
    runtime = bench.runtime_dir(tmp_path / "runtime")
    for imports in (bench.TICK_IMPORTS, bench.API_FIRST_REQUEST_IMPORTS):
        timing = bench.time_bundle_import("path", imports, bundle, runtime, runs=1)
        assert timing.from_source == 0, imports


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


def test_package_refuses_a_template_whose_runtime_is_not_the_interpreters(tmp_path: Path) -> None:
    import json

    packager = load_bench().packager
    template = tmp_path / "sam.json"
    function: dict[str, Any] = {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "./deployment.zip"}}
    for runtime, ok in ((packager.interpreter_runtime(), True), ("python3.99", False)):
        function["Properties"]["Runtime"] = runtime
        template.write_text(json.dumps({"Resources": {"Tick": function}}))
        if ok:
            assert packager.check_runtime(template) == runtime
        else:
            with pytest.raises(packager.PackageError, match=r"python3\.99"):
                packager.check_runtime(template)


def test_package_compiles_the_import_paths_and_skips_the_unused_ccxt_copies() -> None:
    packager = load_bench().packager
    for name in ("app.py", "chalicelib/db/models.py", "sqlalchemy/orm/session.py", "ccxt/binanceus.py",
                 "ccxt/abstract/binance.py", "aws_lambda_powertools/utilities/parameters/secrets.py"):
        assert packager.selected(name), name
    for name in ("ccxt/async_support/binance.py", "ccxt/pro/binance.py", "sqlalchemy/testing/fixtures/orm.py",
                 "aws_lambda_powertools/utilities/parser/models/s3.py", "uvloop/__init__.py", "chalicelib/data/x.csv"):
        assert not packager.selected(name), name
    assert packager.selected("uvloop/__init__.py", compile_all=True)


def _role_statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    role = template["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [s for p in template["Resources"][role]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def _grants(statements: list[dict[str, Any]], action: str, resource_part: str = "") -> bool:
    def listed(value: Any) -> list[str]:
        return value if isinstance(value, list) else [value]

    return any(action in listed(s["Action"]) and any(resource_part in r for r in listed(s["Resource"]))
               for s in statements if s["Effect"] == "Allow")


@pytest.mark.slow
def test_the_prod_package_has_the_queue_dlq_worker_mapping_alarms_topic_throttling_and_a_role_per_function(
    packaged: tuple[Any, Path],
) -> None:
    import json

    _, out = packaged
    template = json.loads((out / "sam.json").read_text())
    resources = template["Resources"]
    types = {name: r["Type"] for name, r in resources.items()}
    assert types["TickQueue"] == types["TickDeadLetterQueue"] == "AWS::SQS::Queue"
    assert resources["TickQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["TickDeadLetterQueue", "Arn"]}
    worker = resources["Worker"]["Properties"]
    assert worker["Events"]["WorkerSqsEventSource"] == {"Type": "SQS", "Properties": {
        "Queue": {"Fn::Sub": "${TickQueue.Arn}"}, "BatchSize": 1, "MaximumBatchingWindowInSeconds": 0}}
    assert worker["ReservedConcurrentExecutions"] == 5
    assert resources["APIHandler"]["Properties"]["ReservedConcurrentExecutions"] == 5
    assert resources["Tick"]["Properties"]["Environment"]["Variables"]["ATB_TICK_QUEUE_URL"] == {"Ref": "TickQueue"}
    assert types["AlarmTopic"] == "AWS::SNS::Topic"
    alarms = {name for name, kind in types.items() if kind == "AWS::CloudWatch::Alarm"}
    assert alarms == {"StaleBotsAlarm", "TickErrorsAlarm", "DeadLetterAlarm", "Api5xxAlarm", "AuroraAtMaxCapacityAlarm"}
    [throttle] = resources["RestAPI"]["Properties"]["MethodSettings"]
    assert throttle["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRate"}
    # one least-privilege role per function
    roles = {resources[f]["Properties"]["Role"]["Fn::GetAtt"][0] for f in ("APIHandler", "Tick", "Worker", "Migrate")}
    assert len(roles) == 4
    for function in ("Tick", "Worker", "Migrate"):
        assert not _grants(_role_statements(template, function), "secretsmanager:GetSecretValue", "api-tokens")
    api = _role_statements(template, "APIHandler")
    assert _grants(api, "secretsmanager:GetSecretValue", "api-tokens")
    assert not any("lambda:" in str(s["Action"]) or "sqs:" in str(s["Action"]) for s in api)
    assert _grants(_role_statements(template, "Tick"), "sqs:SendMessage")
    assert _grants(_role_statements(template, "Worker"), "sqs:ReceiveMessage")
    assert not _grants(_role_statements(template, "Migrate"), "sns:Publish")
