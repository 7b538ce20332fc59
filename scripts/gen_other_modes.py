#!/usr/bin/env python3
"""Regenerate schemas/llamafactory-<version>.other-modes.json: the keys LLaMA-Factory
accepts only with transformers 4.x or in Megatron mode (USE_MCA=1).

Usage:
  pip download --no-deps transformers==4.57.3 -d /tmp/tf4
  python scripts/gen_other_modes.py --transformers-wheel /tmp/tf4/transformers-4.57.3-*.whl \\
      --mcore-training-args <ROLL>/mcore_adapter/src/mcore_adapter/training_args.py \\
      --sources "transformers 4.57.3 and alibaba/ROLL 8eb27cc2 (mcore_adapter 0.10.0.dev0)"
Neither package is imported (both are read as text): mcore_adapter is not on PyPI.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from render.propose import lfschema  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--transformers-wheel", type=Path, required=True)
    ap.add_argument("--mcore-training-args", type=Path, required=True)
    ap.add_argument("--sources", required=True, help="the versions read, for the header")
    ap.add_argument("--out", type=Path, default=lfschema.OTHER_MODES_PATH)
    args = ap.parse_args(argv)
    with zipfile.ZipFile(args.transformers_wheel) as wheel:
        hf4 = {name: wheel.read(f"transformers/{name}").decode("utf-8")
               for name in ("training_args.py", "training_args_seq2seq.py")}
    mca = {"training_args.py": args.mcore_training_args.read_text(encoding="utf-8")}
    data = lfschema.build_other_modes(hf4, mca, args.sources)
    args.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(data['transformers4'])} transformers 4.x keys, "
          f"{len(data['megatron'])} Megatron keys")
    return 0


if __name__ == "__main__":
    sys.exit(main())
