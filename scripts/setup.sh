#!/usr/bin/env bash
# Creates .venv/ and installs ftops with the training stack (LLaMA-Factory, torch,
# DeepSpeed, MLflow). `--dev` adds the test and lint tools. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="train"
if [ "${1:-}" = "--dev" ]; then extras="train,dev"; fi
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c scripts/constraints.txt -e ".[${extras}]"
echo "ftops installed in .venv (extras: ${extras}); try: .venv/bin/ftops --help"
