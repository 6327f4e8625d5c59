"""Deployment bundle and cold-start benchmark (issue 5).

1. Runs ``chalice package --stage prod`` into a temporary directory and reports the size of ``deployment.zip``
   (budget ≤ 35 MB) and of its unzipped content (≤ 150 MB), the largest top-level packages inside, and any
   dev-only package that must not be there (test tools, linters, boto3/botocore: the Lambda runtime ships boto3).
2. Times the cold import of the two Lambda entry paths, median of 5 fresh interpreters each:
   - API path: ``import app`` with its routes (budget ≤ 0.6 s); ccxt and aws_xray_sdk must not be loaded;
   - tick path: ``import app`` + the scheduled tick module + ccxt (budget ≤ 1.2 s).
   Informational extra rows: the modules the first ``GET /api/balance`` loads lazily, and both paths with no
   bytecode cache (``--no-pyc``), which is what Lambda does: the Chalice zip has no ``.pyc`` files and
   ``/var/task`` is read-only, so every cold start compiles from source.

Usage: ``.venv/bin/python bench/bundle.py [--stage prod] [--runs 5] [--no-pyc] [--skip-package]``.
Exit status 1 when a budget is exceeded or a dev-only package is bundled.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000
ZIP_BUDGET_MB = 35
UNZIPPED_BUDGET_MB = 150
API_BUDGET_S = 0.6
TICK_BUDGET_S = 1.2

#: Top-level names in the zip that only development needs. boto3/botocore/s3transfer: the Lambda Python
#: runtime provides them (requirements.txt leaves boto3 out on purpose).
DEV_ONLY = frozenset({
    "pytest", "_pytest", "pluggy", "iniconfig", "xdist", "execnet", "hypothesis", "moto", "responses",
    "ruff", "mypy", "mypy_extensions", "cfnlint", "boto3", "botocore", "s3transfer", "pip", "setuptools",
    "wheel", "_distutils_hack", "pkg_resources",
})

#: Files that must be in the bundle for the app to work in Lambda.
REQUIRED_FILES = ("app.py", "migrations/env.py", "migrations/alembic.ini", "chalicelib/data/BTCUSDT_1h.csv.gz")


@dataclass
class BundleReport:
    zip_bytes: int
    unzipped_bytes: int
    files: int
    packages: list[tuple[str, int, int]]  # (top-level name, unzipped bytes, compressed bytes), largest first
    names: set[str] = field(default_factory=set)

    @property
    def dev_only(self) -> list[str]:
        return sorted(top for top, _, _ in self.packages if _package_name(top) in DEV_ONLY)

    def missing(self) -> list[str]:
        return [f for f in REQUIRED_FILES if f not in self.names]


def _package_name(top: str) -> str:
    """``botocore-1.2.dist-info`` → ``botocore``; ``typing_extensions.py`` → ``typing_extensions``."""
    for suffix in (".dist-info", ".data", ".egg-info"):
        if top.endswith(suffix):
            return top[: -len(suffix)].rsplit("-", 1)[0].lower().replace("-", "_")
    return top.removesuffix(".py").split(".", 1)[0].lower()


def package(out_dir: Path, stage: str = "prod") -> Path:
    """``chalice package --stage <stage> <out_dir>``; returns the directory holding sam.json and the zip."""
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    chalice = Path(sys.executable).with_name("chalice")
    cmd = [str(chalice) if chalice.exists() else "chalice", "package", "--stage", stage, str(out_dir)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chalice package failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return out_dir


def inspect_zip(path: Path) -> BundleReport:
    with zipfile.ZipFile(path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
    size: Counter[str] = Counter()
    compressed: Counter[str] = Counter()
    for info in infos:
        top = info.filename.split("/", 1)[0]
        size[top] += info.file_size
        compressed[top] += info.compress_size
    packages = [(top, n, compressed[top]) for top, n in size.most_common()]
    return BundleReport(zip_bytes=path.stat().st_size, unzipped_bytes=sum(size.values()), files=len(infos),
                        packages=packages, names={i.filename for i in infos})


# --- cold imports -------------------------------------------------------------------------------------------

API_SNIPPET = """
import json, sys, time
t = time.perf_counter()
import app
elapsed = time.perf_counter() - t
assert app.app.routes, "no routes registered"
print(json.dumps({"seconds": elapsed, "ccxt": "ccxt" in sys.modules, "xray": "aws_xray_sdk" in sys.modules}))
"""

API_FIRST_REQUEST_SNIPPET = """
import json, sys, time
t = time.perf_counter()
import app
import chalicelib.api.schemas, chalicelib.balances, chalicelib.db.engine, chalicelib.db.models, chalicelib.db.uow
import chalicelib.views, pg8000
from aws_lambda_powertools.utilities import parameters
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "ccxt": "ccxt" in sys.modules, "xray": "aws_xray_sdk" in sys.modules}))
"""

TICK_SNIPPET = """
import json, sys, time
t = time.perf_counter()
import app
import chalicelib.engine.scheduled
import ccxt
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "ccxt": "ccxt" in sys.modules, "xray": "aws_xray_sdk" in sys.modules}))
"""


@dataclass
class ImportTiming:
    label: str
    runs: list[float]
    budget: float | None
    ccxt_loaded: bool
    xray_loaded: bool

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def within_budget(self) -> bool:
        return self.budget is None or self.median <= self.budget


def time_import(label: str, snippet: str, runs: int = 5, budget: float | None = None,
                no_pyc: bool = False) -> ImportTiming:
    """Median over ``runs`` fresh interpreters. ``no_pyc``: an empty bytecode cache each run (as in Lambda)."""
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
           "POWERTOOLS_SERVICE_NAME": "atb", "POWERTOOLS_METRICS_NAMESPACE": "ATB"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    seconds: list[float] = []
    ccxt = xray = False
    if not no_pyc:  # warm the bytecode cache once so every measured run reads .pyc files
        subprocess.run([sys.executable, "-c", snippet], cwd=ROOT, env=env, capture_output=True, check=True)
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="atb-pyc-") as cache:
            run_env = {**env, "PYTHONPYCACHEPREFIX": cache} if no_pyc else env
            done = subprocess.run([sys.executable, "-c", snippet], cwd=ROOT, env=run_env, capture_output=True,
                                  text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{label}: the import failed:\n{done.stderr}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        seconds.append(float(result["seconds"]))
        ccxt = ccxt or bool(result["ccxt"])
        xray = xray or bool(result["xray"])
    return ImportTiming(label, seconds, budget, ccxt, xray)


def import_timings(runs: int = 5, no_pyc: bool = False) -> list[ImportTiming]:
    timings = [
        time_import("API path: import app (routes)", API_SNIPPET, runs, API_BUDGET_S),
        time_import("tick path: app + engine.scheduled + ccxt", TICK_SNIPPET, runs, TICK_BUDGET_S),
        time_import("info: API + first GET /api/balance modules", API_FIRST_REQUEST_SNIPPET, runs),
    ]
    if no_pyc:
        timings += [
            time_import("info: API path, no .pyc (Lambda-like)", API_SNIPPET, runs, no_pyc=True),
            time_import("info: API + first request, no .pyc", API_FIRST_REQUEST_SNIPPET, runs, no_pyc=True),
            time_import("info: tick path, no .pyc (Lambda-like)", TICK_SNIPPET, runs, no_pyc=True),
        ]
    return timings


# --- report -------------------------------------------------------------------------------------------------

def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB"


def print_bundle(report: BundleReport, top: int = 15) -> bool:
    ok_zip = report.zip_bytes <= ZIP_BUDGET_MB * MB
    ok_unzipped = report.unzipped_bytes <= UNZIPPED_BUDGET_MB * MB
    print(f"{'bundle':<46} {'size':>10} {'budget':>10}  ok")
    print(f"{'deployment.zip':<46} {_mb(report.zip_bytes):>10} {f'{ZIP_BUDGET_MB} MB':>10}  "
          f"{'yes' if ok_zip else 'NO'}")
    print(f"{'unzipped':<46} {_mb(report.unzipped_bytes):>10} {f'{UNZIPPED_BUDGET_MB} MB':>10}  "
          f"{'yes' if ok_unzipped else 'NO'}")
    print(f"({report.files} files)\n")
    print(f"{'largest top-level entries':<46} {'unzipped':>10} {'zipped':>10}")
    for name, size, compressed in report.packages[:top]:
        print(f"{name[:46]:<46} {_mb(size):>10} {_mb(compressed):>10}")
    dev = report.dev_only
    missing = report.missing()
    print(f"\ndev-only packages in the bundle: {', '.join(dev) if dev else 'none'}")
    print(f"required files missing: {', '.join(missing) if missing else 'none'}\n")
    return ok_zip and ok_unzipped and not dev and not missing


def print_timings(timings: list[ImportTiming]) -> bool:
    print(f"{'cold import (fresh interpreter)':<46} {'median':>8} {'min':>7} {'max':>7} {'budget':>7}  ok")
    ok = True
    for t in timings:
        budget = f"{t.budget:.1f} s" if t.budget is not None else "-"
        good = t.within_budget
        flags = ""
        if t.label.startswith("API") and (t.ccxt_loaded or t.xray_loaded):
            good = False
            flags = "  (ccxt or aws_xray_sdk imported!)"
        ok = ok and good
        print(f"{t.label:<46} {t.median:>6.3f} s {min(t.runs):>5.3f} s {max(t.runs):>5.3f} s {budget:>7}  "
              f"{'yes' if good else 'NO'}{flags}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-pyc", action="store_true", help="also time imports with an empty bytecode cache")
    parser.add_argument("--skip-package", action="store_true", help="only time the imports")
    args = parser.parse_args(argv)

    ok = True
    if not args.skip_package:
        with tempfile.TemporaryDirectory(prefix="atb-package-") as tmp:
            started = time.perf_counter()
            out = package(Path(tmp) / "out", args.stage)
            print(f"chalice package --stage {args.stage}: {time.perf_counter() - started:.1f} s\n")
            ok = print_bundle(inspect_zip(out / "deployment.zip")) and ok
    ok = print_timings(import_timings(args.runs, args.no_pyc)) and ok
    print("\nall budgets met" if ok else "\nBUDGET EXCEEDED (see NO above)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
