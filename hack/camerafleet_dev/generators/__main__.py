"""`python -m camerafleet_dev.generators --write` rewrites every generated file; `--check` exits 1 and
names each stale one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from camerafleet_dev.generators import ROOT, chart_files, crd, readme, rendered


def expected() -> dict[Path, str]:
    """Every generated file and the text it must have."""
    return {**crd.files(), **chart_files.files(), **rendered.files(), **readme.files()}


def stale() -> list[Path]:
    return [path for path, text in expected().items() if not path.is_file() or path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camerafleet_dev.generators", description=__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite every generated file")
    action.add_argument("--check", action="store_true", help="exit 1 when a generated file is stale")
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale()
        for path in outdated:
            print(f"{path.relative_to(ROOT)} is stale: run `make generate`", file=sys.stderr)
        return 1 if outdated else 0
    for path, text in expected().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
