"""Write a scratch copy's pyproject.toml whose [tool.mutmut] runs one fast profile (docs/mutation.md).

mutmut 3.8.1 reads one module list and one test selection from ``[tool.mutmut]``; the profiles in
``[tool.mutmut.atb_profiles]`` pair a few modules with the SQLite tests that hold them. Usage:
``python scripts/mutation_profile.py PROFILE SOURCE_PYPROJECT DEST_PYPROJECT``.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: mutation_profile.py PROFILE SOURCE_PYPROJECT DEST_PYPROJECT\n")
        return 2
    name, source, dest = argv
    text = Path(source).read_text("utf-8")
    config = tomllib.loads(text)["tool"]["mutmut"]
    profiles = config.get("atb_profiles", {})
    if name not in profiles:
        sys.stderr.write(f"unknown mutation profile {name!r} (known: {', '.join(sorted(profiles))})\n")
        return 2
    profile = profiles[name]
    start = text.index("[tool.mutmut]")
    # The profile's section replaces everything from [tool.mutmut] on ([tool.mutmut] is the file's last table).
    section = "\n".join([
        "[tool.mutmut]",
        f"source_paths = {json.dumps(config['source_paths'])}",
        f"only_mutate = {json.dumps(profile['only_mutate'])}",
        f"pytest_add_cli_args_test_selection = {json.dumps(profile['tests'])}",
        f"also_copy = {json.dumps(config.get('also_copy', []))}",
        "",
    ])
    Path(dest).write_text(text[:start] + section, "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
