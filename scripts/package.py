# ruff: noqa: T201  (a command-line script: printing is its output)
"""Build the Lambda deployment package with bytecode: ``chalice package``, then precompile ``deployment.zip``.

Why: ``chalice package`` ships ``.py`` sources only and ``/var/task`` is read-only in Lambda, so every cold
start compiles every imported module from source (seconds for SQLAlchemy, pydantic and ccxt). This script runs
``chalice package --stage STAGE OUTDIR`` and then rewrites ``OUTDIR/deployment.zip``:

1. extracts it to a temporary directory;
2. compiles the modules on the Lambdas' import paths (:data:`COMPILE`, minus :data:`SKIP`; ``--all`` compiles
   every ``.py``) with ``compileall``, ``legacy=False`` (``__pycache__/<name>.cpython-3XY.pyc``) and
   ``invalidation_mode=UNCHECKED_HASH``: the interpreter uses the ``.pyc`` without comparing it with the source,
   so neither the zip's 2-second timestamps nor Lambda's extraction can invalidate it. Stale timestamp-based
   ``.pyc`` files that Chalice copied from a developer's ``chalicelib/__pycache__`` are dropped. The ``.py``
   sources stay (tracebacks show the source lines);
3. leaves out what no handler imports (:data:`PRUNE`: ccxt's asyncio stack and async/pro/test copies);
4. re-zips deterministically: entries sorted by name, all timestamps 1980-01-01 00:00, ZIP_DEFLATED level 9,
   the Unix mode bits Chalice set kept (new ``.pyc`` files get their source's mode).

Bytecode is specific to the Python minor version, so the script refuses to run when the ``Runtime`` of the
generated template (``python3.X``) is not the version of the interpreter running it (Chalice takes the runtime
from that interpreter too). ``sam.json`` is left as Chalice wrote it: ``CodeUri`` stays ``./deployment.zip``.

Not everything is compiled, because of the size budgets (≤ 35 MB zipped, ≤ 150 MB unzipped): bytecode for the
whole bundle (``--all``) makes the zip ≈ 51 MB, 174 MB unzipped. :data:`COMPILE` is the import closure of the
three handlers (traced from the unpacked bundle: API path, the first request's lazy imports, tick, migrate) and
:data:`SKIP` the big subtrees inside those packages that nothing imports (ccxt's async/pro/test copies of every
exchange, test suites, SQL dialects other than PostgreSQL/SQLite, powertools utilities other than parameters):
with :data:`PRUNE` applied, ≈ 31.7 MB zipped and 105 MB unzipped (measured 2026-11-25).
``bench/bundle.py`` reports any module the paths still import without bytecode.

Usage: ``.venv/bin/python scripts/package.py [--stage prod] [--merge-template FILE] [--all] OUTDIR``.
Exit status 0 on success (a size budget overrun is reported, not fatal), 1 when chalice fails, the runtime
does not match or a file does not compile, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from py_compile import PycInvalidationMode

ROOT = Path(__file__).resolve().parents[1]
#: Merged into every package (issue 14): the tick queue and its dead-letter queue, the worker's event source, the
#: alarms and their SNS topic, API Gateway throttling. ``--merge-template`` replaces it.
APP_RESOURCES = ROOT / "infra" / "app-resources.json"
MB = 1_000_000
ZIP_BUDGET_MB = 35
UNZIPPED_BUDGET_MB = 150

#: Fixed timestamp of every zip entry (the earliest a zip can hold; what Chalice uses too).
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
#: Mode of an entry that had none (``-rw-r--r--``, regular file).
DEFAULT_MODE = 0o100644
#: Where Lambda unpacks the zip: the file name recorded in the bytecode (tracebacks use the real path anyway).
LAMBDA_TASK_ROOT = "/var/task"

#: Source files to compile (``fnmatch`` patterns on the zip path; ``*`` also matches ``/``): the packages the
#: handlers import (app, chalicelib, migrations and their runtime dependencies, transitively).
COMPILE: tuple[str, ...] = (
    "app.py", "chalicelib/*", "migrations/*",
    "sqlalchemy/*", "alembic/*", "mako/*", "markupsafe/*",
    "pydantic/*", "pydantic_core/*", "annotated_types/*", "typing_inspection/*", "typing_extensions.py",
    "pg8000/*", "scramp/*", "asn1crypto/*",
    "aws_lambda_powertools/*", "jmespath/*", "chalice/*",
    "ccxt/*", "requests/*", "urllib3/*", "certifi/*", "charset_normalizer/*", "idna/*", "dateutil/*",
    "cryptography/*", "orjson/*",
)
#: Subtrees of those packages that none of the handlers imports: left as source to stay within the budgets.
SKIP: tuple[str, ...] = (
    "ccxt/async_support/*", "ccxt/pro/*", "ccxt/test/*", "ccxt/prediction/*",
    "*/testing/*", "alembic/templates/*", "pydantic/v1/*",
    "sqlalchemy/dialects/mssql/*", "sqlalchemy/dialects/mysql/*", "sqlalchemy/dialects/oracle/*",
    "sqlalchemy/ext/asyncio/*", "sqlalchemy/ext/mypy/*",
    "aws_lambda_powertools/event_handler/*", "aws_lambda_powertools/utilities/*/*",
)
#: Left out of the bundle altogether: ccxt's asyncio stack and its async/pro/test copies of every exchange. The
#: handlers use ccxt's synchronous client only (``import ccxt`` loads none of these; bench/bundle.py and
#: tests/deploy/test_bundle.py import every handler path from the pruned bundle to prove it), and these are
#: ≈ 62 MB unzipped that would otherwise push the bundle past its budgets.
PRUNE: tuple[str, ...] = (
    "ccxt/async_support/*", "ccxt/pro/*", "ccxt/test/*",
    "uvloop/*", "aiohttp/*", "aiohttp_fast_zlib/*", "aiodns/*", "pycares/*", "yarl/*", "multidict/*",
    "frozenlist/*", "aiosignal/*", "propcache/*", "aiohappyeyeballs/*",
)
#: Exceptions to :data:`SKIP` (the powertools utilities the app uses).
SKIP_EXCEPT: tuple[str, ...] = (
    "aws_lambda_powertools/utilities/parameters/*", "aws_lambda_powertools/utilities/jmespath_utils/*",
)


class PackageError(RuntimeError):
    """Packaging cannot go on; the message says why."""


@dataclass(frozen=True)
class ZipSize:
    """Size of a deployment zip: the file itself and the sum of its entries' uncompressed sizes."""

    zipped: int
    unzipped: int
    files: int
    pyc: int

    @classmethod
    def of(cls, path: Path) -> ZipSize:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
        return cls(zipped=path.stat().st_size, unzipped=sum(i.file_size for i in infos), files=len(infos),
                   pyc=sum(1 for i in infos if i.filename.endswith(".pyc")))

    @property
    def within_budget(self) -> bool:
        return self.zipped <= ZIP_BUDGET_MB * MB and self.unzipped <= UNZIPPED_BUDGET_MB * MB


def interpreter_runtime() -> str:
    """The Lambda runtime name of the running interpreter, e.g. ``python3.11``."""
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def chalice_package(out_dir: Path, stage: str = "prod", merge_template: Path | None = None) -> None:
    """``chalice package --stage STAGE [--merge-template FILE] OUT_DIR`` in the project root."""
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    chalice = Path(sys.executable).with_name("chalice")
    cmd = [str(chalice) if chalice.exists() else "chalice", "package", "--stage", stage]
    cmd += ["--merge-template", str((merge_template or APP_RESOURCES).resolve())]
    cmd.append(str(out_dir.resolve()))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise PackageError(f"chalice package failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def template_runtimes(template_path: Path) -> set[str]:
    """The ``Runtime`` of every function whose code is ``./deployment.zip`` (and of ``Globals.Function``)."""
    template = json.loads(template_path.read_text())
    runtimes: set[str] = set()
    global_runtime = template.get("Globals", {}).get("Function", {}).get("Runtime")
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            continue
        props = resource.get("Properties", {})
        if props.get("CodeUri", "./deployment.zip") != "./deployment.zip":
            continue
        runtime = props.get("Runtime", global_runtime)
        if runtime is not None:
            runtimes.add(str(runtime))
    return runtimes


def check_runtime(template_path: Path) -> str:
    """Raise :class:`PackageError` unless every function runs the interpreter's Python version."""
    wanted = interpreter_runtime()
    runtimes = template_runtimes(template_path)
    if not runtimes:
        raise PackageError(f"{template_path}: no function with CodeUri ./deployment.zip and a Runtime")
    if runtimes != {wanted}:
        raise PackageError(
            f"{template_path} declares Runtime {', '.join(sorted(runtimes))} but this is {wanted} "
            f"({sys.executable}); bytecode only works on the Python version that compiled it. Run the script "
            f"with a {', '.join(sorted(runtimes))} interpreter (the one Chalice should package with).")
    return wanted


def selected(name: str, compile_all: bool = False) -> bool:
    """Whether the zip entry ``name`` (a ``.py`` file) gets bytecode."""
    if not name.endswith(".py"):
        return False
    if compile_all:
        return True
    if not any(fnmatchcase(name, pattern) for pattern in COMPILE):
        return False
    return not any(fnmatchcase(name, p) for p in SKIP) or any(fnmatchcase(name, p) for p in SKIP_EXCEPT)


def pruned(name: str) -> bool:
    """Is this zip entry left out of the bundle (:data:`PRUNE`)?"""
    return any(fnmatchcase(name, p) for p in PRUNE)


def _compile_one(args: tuple[str, str]) -> bool:
    path, root = args
    return bool(compileall.compile_file(
        path, force=True, quiet=1, legacy=False, invalidation_mode=PycInvalidationMode.UNCHECKED_HASH,
        stripdir=root, prependdir=LAMBDA_TASK_ROOT))


def compile_sources(root: Path, names: Iterable[str], workers: int | None = None) -> list[str]:
    """Compile ``root/name`` for each name (in parallel); returns the names that failed to compile."""
    names = sorted(names)
    jobs = [(str(root / name), str(root)) for name in names]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = list(pool.map(_compile_one, jobs, chunksize=32))
    return [name for name, ok in zip(names, results, strict=True) if not ok]


def _zip_info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix: the external attributes hold st_mode
    info.external_attr = (mode & 0xFFFF) << 16
    return info


def precompile_zip(source: Path, dest: Path, compile_all: bool = False) -> list[str]:
    """Write ``dest``: the entries of ``source`` plus bytecode for the selected modules, re-zipped
    deterministically. ``source`` and ``dest`` may be the same file. Returns the names of the ``.pyc`` added."""
    with tempfile.TemporaryDirectory(prefix="atb-precompile-") as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(source) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            zf.extractall(root)
        # .pyc files already in the zip are a developer's timestamp-based cache that Chalice copied along with
        # chalicelib/: dropped; the selected modules get fresh ones below.
        modes = {i.filename: (i.external_attr >> 16) or DEFAULT_MODE for i in infos
                 if not i.filename.endswith(".pyc") and not pruned(i.filename)}
        infos = [i for i in infos if i.filename in modes]
        sources = [i.filename for i in infos if selected(i.filename, compile_all)]
        failed = compile_sources(root, sources)
        if failed:
            raise PackageError(f"{len(failed)} file(s) do not compile: {', '.join(failed[:10])}")
        tag = sys.implementation.cache_tag
        added: list[str] = []
        for name in sources:
            folder, _, filename = name.rpartition("/")
            pyc = f"{folder}/" if folder else ""
            pyc += f"__pycache__/{filename[:-3]}.{tag}.pyc"
            if not (root / pyc).is_file():
                raise PackageError(f"compileall wrote no {pyc}")
            modes[pyc] = modes[name]
            added.append(pyc)
        partial = dest.with_name(dest.name + ".partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as out:
            for name in sorted(modes):
                out.writestr(_zip_info(name, modes[name]), (root / name).read_bytes(),
                             compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        partial.replace(dest)
    return added


def build(out_dir: Path, stage: str = "prod", merge_template: Path | None = None, compile_all: bool = False,
          keep_plain: Path | None = None) -> tuple[ZipSize, ZipSize]:
    """Package ``stage`` into ``out_dir`` and precompile its zip; returns the sizes before and after.
    ``keep_plain``: also keep Chalice's zip (no bytecode) at that path."""
    chalice_package(out_dir, stage, merge_template)
    check_runtime(out_dir / "sam.json")
    zip_path = out_dir / "deployment.zip"
    before = ZipSize.of(zip_path)
    if keep_plain is not None:
        shutil.copyfile(zip_path, keep_plain)
    precompile_zip(zip_path, zip_path, compile_all)
    return before, ZipSize.of(zip_path)


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB"


def print_sizes(before: ZipSize, after: ZipSize) -> None:
    print(f"{'deployment.zip':<24} {'zipped':>10} {'unzipped':>10} {'files':>7} {'.pyc':>6}")
    for label, size in (("chalice package", before), ("precompiled", after)):
        print(f"{label:<24} {_mb(size.zipped):>10} {_mb(size.unzipped):>10} {size.files:>7} {size.pyc:>6}")
    print(f"{'budget':<24} {f'{ZIP_BUDGET_MB} MB':>10} {f'{UNZIPPED_BUDGET_MB} MB':>10}")
    if not after.within_budget:
        print("WARNING: the precompiled zip exceeds the size budget", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out_dir", type=Path, metavar="OUTDIR", help="where sam.json and deployment.zip go")
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--merge-template", type=Path, help="passed to chalice package (as an absolute path)")
    parser.add_argument("--all", dest="compile_all", action="store_true",
                        help="compile every .py in the bundle, not only the import paths (exceeds the budgets)")
    args = parser.parse_args(argv)
    try:
        before, after = build(args.out_dir, args.stage, args.merge_template, args.compile_all)
    except PackageError as exc:
        print(f"package.py: {exc}", file=sys.stderr)
        return 1
    print_sizes(before, after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
