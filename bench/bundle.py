"""Deployment bundle and cold-start benchmark (issue 5).

1. Packages the prod stage the way it is deployed, through ``scripts/package.py`` (``chalice package``, then
   bytecode added to ``deployment.zip``) in a temporary directory, keeping Chalice's own zip too. Reports the
   size of both zips and of their unzipped content (budget for the shipped, precompiled one: ≤ 35 MB zipped,
   ≤ 150 MB unzipped), the largest top-level entries, and any dev-only package that must not be there (test
   tools, linters, boto3/botocore: the Lambda runtime ships boto3).
2. Unpacks both zips and times the cold import of the Lambda entry paths FROM THE UNPACKED BUNDLE, median of 5
   fresh interpreters each, for the plain Chalice zip (no bytecode: what plain ``chalice deploy`` ships, and since
   ``/var/task`` is read-only every cold start compiles from source) and for the precompiled zip:
   - API path: ``import app`` with its routes (budget ≤ 0.6 s, precompiled); ccxt and aws_xray_sdk must not be
     loaded;
   - info: the API path plus the modules the first ``GET /api/balance`` loads lazily;
   - tick path: ``import app`` + the scheduled tick module + ccxt (budget ≤ 1.2 s, precompiled).
   Each interpreter runs ``python -I -S -B``: ``sys.path`` is the unpacked bundle, then a directory holding only
   boto3/botocore/s3transfer (what the Lambda runtime provides), then the standard library; no site-packages,
   no ``PYTHON*`` variables, nothing written to ``__pycache__``, so no run benefits from an earlier one. The
   "from source" column counts the bundle modules a path imported without usable bytecode.

``--skip-package`` times the imports in the working tree instead (the development venv, warm bytecode cache),
and with ``--no-pyc`` also with an empty bytecode cache, as before.

Usage: ``.venv/bin/python bench/bundle.py [--stage prod] [--runs 5] [--skip-package [--no-pyc]]``.
Exit status 1 when a budget is exceeded or a dev-only package is bundled.
"""

from __future__ import annotations

import argparse
import importlib.util
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _load_packager() -> Any:
    """``scripts/package.py`` (not a package: loaded by path)."""
    spec = importlib.util.spec_from_file_location("atb_scripts_package", ROOT / "scripts" / "package.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and the compile workers resolve it through sys.modules
    spec.loader.exec_module(module)
    return module


packager = _load_packager()
MB: int = packager.MB
ZIP_BUDGET_MB: int = packager.ZIP_BUDGET_MB
UNZIPPED_BUDGET_MB: int = packager.UNZIPPED_BUDGET_MB
API_BUDGET_S = 0.6
TICK_BUDGET_S = 1.2

#: Top-level names in the zip that only development needs. boto3/botocore/s3transfer: the Lambda Python
#: runtime provides them (requirements.txt leaves boto3 out on purpose).
DEV_ONLY = frozenset({
    "pytest", "_pytest", "pluggy", "iniconfig", "xdist", "execnet", "hypothesis", "moto", "responses",
    "ruff", "mypy", "mypy_extensions", "cfnlint", "boto3", "botocore", "s3transfer", "pip", "setuptools",
    "wheel", "_distutils_hack", "pkg_resources", "optuna", "lab",
})

#: What the Lambda Python runtime adds to sys.path next to /var/task (the bundle leaves them out on purpose).
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer")

#: Files that must be in the bundle for the app to work in Lambda.
REQUIRED_FILES = ("app.py", "migrations/env.py", "migrations/alembic.ini", "chalicelib/data/BTCUSDT_1h.csv.gz",
                  "chalicelib/data/ETHUSDT_1h.csv.gz")

#: Name of Chalice's own zip (no bytecode) next to the output directory of :func:`package`.
PLAIN_ZIP = "chalice-deployment.zip"


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

    @property
    def pyc(self) -> int:
        return sum(1 for n in self.names if n.endswith(".pyc"))

    def missing(self) -> list[str]:
        return [f for f in REQUIRED_FILES if f not in self.names]


def _package_name(top: str) -> str:
    """``botocore-1.2.dist-info`` → ``botocore``; ``typing_extensions.py`` → ``typing_extensions``."""
    for suffix in (".dist-info", ".data", ".egg-info"):
        if top.endswith(suffix):
            return top[: -len(suffix)].rsplit("-", 1)[0].lower().replace("-", "_")
    return top.removesuffix(".py").split(".", 1)[0].lower()


def package(out_dir: Path, stage: str = "prod") -> Path:
    """``scripts/package.py --stage <stage> <out_dir>``: sam.json and the precompiled deployment.zip in
    ``out_dir``; Chalice's own zip (no bytecode) is kept as ``out_dir.parent / PLAIN_ZIP``."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    packager.build(out_dir, stage, keep_plain=out_dir.parent / PLAIN_ZIP)
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

#: What each path imports (the timed part of a snippet).
API_IMPORTS = """
import app
assert app.app.routes, "no routes registered"
"""

API_FIRST_REQUEST_IMPORTS = """
import app
import chalicelib.api.schemas, chalicelib.balances, chalicelib.db.engine, chalicelib.db.models, chalicelib.db.uow
import pg8000
from aws_lambda_powertools.utilities import parameters
"""

TICK_IMPORTS = """
import app
import chalicelib.bot.scheduled
import ccxt
"""

#: Runs in a fresh interpreter: sys.argv[1:] go in front of sys.path (the bundle, the runtime packages), then
#: the imports are timed; prints one JSON line. ``from_source``: modules loaded from a .py under sys.argv[1]
#: without hash-based bytecode next to it (so compiled from source at import).
_SNIPPET = """
import sys
sys.path[:0] = sys.argv[1:]
import json, os, time
t = time.perf_counter()
{imports}
elapsed = time.perf_counter() - t

def _hash_pyc(path):
    try:
        with open(path, "rb") as f:
            return int.from_bytes(f.read(8)[4:8], "little") & 1 == 1
    except OSError:
        return False

bundle = sys.argv[1] + os.sep if len(sys.argv) > 1 else None
from_source = 0
for m in list(sys.modules.values()):
    spec = getattr(m, "__spec__", None)
    origin = getattr(spec, "origin", None) or ""
    if bundle and origin.startswith(bundle) and origin.endswith(".py") and not _hash_pyc(spec.cached or ""):
        from_source += 1
print(json.dumps({{"seconds": elapsed, "ccxt": "ccxt" in sys.modules, "xray": "aws_xray_sdk" in sys.modules,
                  "modules": len(sys.modules), "from_source": from_source}}))
"""

PATHS: tuple[tuple[str, str, float | None], ...] = (
    ("API path: import app (routes)", API_IMPORTS, API_BUDGET_S),
    ("info: API + first GET /api/balance modules", API_FIRST_REQUEST_IMPORTS, None),
    ("tick path: app + bot.scheduled + ccxt", TICK_IMPORTS, TICK_BUDGET_S),
)

#: The old names, for callers that import them.
API_SNIPPET = _SNIPPET.format(imports=API_IMPORTS)
API_FIRST_REQUEST_SNIPPET = _SNIPPET.format(imports=API_FIRST_REQUEST_IMPORTS)
TICK_SNIPPET = _SNIPPET.format(imports=TICK_IMPORTS)


@dataclass
class ImportTiming:
    label: str
    runs: list[float]
    budget: float | None
    ccxt_loaded: bool
    xray_loaded: bool
    from_source: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def within_budget(self) -> bool:
        return self.budget is None or self.median <= self.budget

    @property
    def clean(self) -> bool:
        """Within budget and, on the API path, neither ccxt nor X-Ray loaded."""
        return self.within_budget and not (self.label.startswith("API") and (self.ccxt_loaded or self.xray_loaded))


def _env() -> dict[str, str]:
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
           "POWERTOOLS_SERVICE_NAME": "atb", "POWERTOOLS_METRICS_NAMESPACE": "ATB"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _run(label: str, cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{label}: the import failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _timing(label: str, results: list[dict[str, Any]], budget: float | None) -> ImportTiming:
    return ImportTiming(label, [float(r["seconds"]) for r in results], budget,
                        any(r["ccxt"] for r in results), any(r["xray"] for r in results),
                        max(int(r["from_source"]) for r in results))


def time_import(label: str, snippet: str, runs: int = 5, budget: float | None = None,
                no_pyc: bool = False) -> ImportTiming:
    """Working tree (development venv), median over ``runs`` fresh interpreters. ``no_pyc``: an empty bytecode
    cache each run."""
    env = _env()
    if not no_pyc:  # warm the bytecode cache once so every measured run reads .pyc files
        subprocess.run([sys.executable, "-c", snippet], cwd=ROOT, env=env, capture_output=True, check=True)
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="atb-pyc-") as cache:
            run_env = {**env, "PYTHONPYCACHEPREFIX": cache} if no_pyc else env
            results.append(_run(label, [sys.executable, "-c", snippet], ROOT, run_env))
    return _timing(label, results, budget)


def runtime_dir(dest: Path) -> Path:
    """``dest`` with symlinks to the development venv's boto3, botocore and s3transfer: the packages the Lambda
    Python runtime puts on sys.path next to the bundle."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"{name} is not installed in {sys.prefix}; it stands in for the Lambda runtime's")
        link = dest / name
        if not link.exists():
            link.symlink_to(Path(next(iter(spec.submodule_search_locations))), target_is_directory=True)
    return dest


def unpack(zip_path: Path, dest: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(dest)
    return dest


def time_bundle_import(label: str, imports: str, bundle: Path, runtime: Path, runs: int = 5,
                       budget: float | None = None) -> ImportTiming:
    """Median over ``runs`` fresh ``python -I -S -B`` interpreters whose sys.path is ``bundle``, ``runtime`` and
    the standard library (``-B``: nothing is written to ``__pycache__``, so every run starts as cold)."""
    cmd = [sys.executable, "-I", "-S", "-B", "-c", _SNIPPET.format(imports=imports), str(bundle), str(runtime)]
    env = {**_env(), "PYTHONDONTWRITEBYTECODE": "1"}  # -I ignores it; -B does the same
    with tempfile.TemporaryDirectory(prefix="atb-cwd-") as cwd:  # an empty working directory
        results = [_run(label, cmd, Path(cwd), env) for _ in range(runs)]
    return _timing(label, results, budget)


def bundle_timings(plain: Path, precompiled: Path, runtime: Path,
                   runs: int = 5) -> list[tuple[ImportTiming, ImportTiming]]:
    """(plain Chalice bundle, precompiled bundle) timings of each path in :data:`PATHS`."""
    return [(time_bundle_import(label, imports, plain, runtime, runs),
             time_bundle_import(label, imports, precompiled, runtime, runs, budget))
            for label, imports, budget in PATHS]


def import_timings(runs: int = 5, no_pyc: bool = False) -> list[ImportTiming]:
    """Working-tree timings (``--skip-package``)."""
    timings = [
        time_import("API path: import app (routes)", API_SNIPPET, runs, API_BUDGET_S),
        time_import("tick path: app + bot.scheduled + ccxt", TICK_SNIPPET, runs, TICK_BUDGET_S),
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


def print_bundle(report: BundleReport, top: int = 15, plain: BundleReport | None = None) -> bool:
    """Sizes against the budgets (of ``report``, the zip that ships), largest entries, dev-only and required
    files. ``plain``: Chalice's zip without bytecode, shown for comparison."""
    ok_zip = report.zip_bytes <= ZIP_BUDGET_MB * MB
    ok_unzipped = report.unzipped_bytes <= UNZIPPED_BUDGET_MB * MB
    print(f"{'bundle':<46} {'zipped':>10} {'unzipped':>10} {'files':>6} {'.pyc':>5}  ok")
    if plain is not None:
        print(f"{'chalice package (no bytecode)':<46} {_mb(plain.zip_bytes):>10} {_mb(plain.unzipped_bytes):>10} "
              f"{plain.files:>6} {plain.pyc:>5}")
    label = "deployment.zip (precompiled)" if plain is not None else "deployment.zip"
    print(f"{label:<46} {_mb(report.zip_bytes):>10} {_mb(report.unzipped_bytes):>10} {report.files:>6} "
          f"{report.pyc:>5}  {'yes' if ok_zip and ok_unzipped else 'NO'}")
    print(f"{'budget':<46} {f'{ZIP_BUDGET_MB} MB':>10} {f'{UNZIPPED_BUDGET_MB} MB':>10}"
          f"{'' if ok_zip else '  (zipped: over)'}{'' if ok_unzipped else '  (unzipped: over)'}\n")
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
        flags = "  (ccxt or aws_xray_sdk imported!)" if t.within_budget and not t.clean else ""
        ok = ok and t.clean
        print(f"{t.label:<46} {t.median:>6.3f} s {min(t.runs):>5.3f} s {max(t.runs):>5.3f} s {budget:>7}  "
              f"{'yes' if t.clean else 'NO'}{flags}")
    return ok


def print_bundle_timings(pairs: list[tuple[ImportTiming, ImportTiming]], runs: int) -> bool:
    print(f"cold import from the unpacked bundle, median of {runs} fresh interpreters (python -I -S -B)")
    print(f"{'path':<46} {'chalice zip':>11} {'precompiled':>11} {'budget':>7}  ok  {'from source':>11}")
    ok = True
    for plain, pre in pairs:
        budget = f"{pre.budget:.1f} s" if pre.budget is not None else "-"
        flags = "  (ccxt or aws_xray_sdk imported!)" if pre.within_budget and not pre.clean else ""
        ok = ok and pre.clean
        print(f"{pre.label:<46} {plain.median:>9.3f} s {pre.median:>9.3f} s {budget:>7}  "
              f"{'yes' if pre.clean else 'NO ':<3} {plain.from_source:>4} → {pre.from_source:<4}{flags}")
    print("(from source: bundle modules imported without bytecode, chalice zip → precompiled; budgets apply to "
          "the precompiled zip)")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-pyc", action="store_true",
                        help="with --skip-package: also time imports with an empty bytecode cache")
    parser.add_argument("--skip-package", action="store_true",
                        help="only time the imports, in the working tree (development venv)")
    args = parser.parse_args(argv)

    ok = True
    if args.skip_package:
        ok = print_timings(import_timings(args.runs, args.no_pyc)) and ok
    else:
        with tempfile.TemporaryDirectory(prefix="atb-package-") as tmp_name:
            tmp = Path(tmp_name)
            started = time.perf_counter()
            out = package(tmp / "out", args.stage)
            print(f"scripts/package.py --stage {args.stage}: {time.perf_counter() - started:.1f} s\n")
            plain_zip = tmp / PLAIN_ZIP
            ok = print_bundle(inspect_zip(out / "deployment.zip"), plain=inspect_zip(plain_zip)) and ok
            pairs = bundle_timings(unpack(plain_zip, tmp / "plain"), unpack(out / "deployment.zip", tmp / "pre"),
                                   runtime_dir(tmp / "runtime"), args.runs)
            ok = print_bundle_timings(pairs, args.runs) and ok
    print("\nall budgets met" if ok else "\nBUDGET EXCEEDED (see NO above)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
