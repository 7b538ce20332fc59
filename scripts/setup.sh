#!/usr/bin/env bash
# Creates .venv/ and installs ftops with the training stack (LLaMA-Factory, torch,
# DeepSpeed, MLflow). `--dev` adds the test and lint tools, and (as root, with apt)
# Debian's chromium and chromium-driver for the LLaMA Board browser test. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="train"
if [ "${1:-}" = "--dev" ]; then extras="train,dev"; fi
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c scripts/constraints.txt -e ".[${extras}]"
if [ "${1:-}" = "--dev" ] && ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: tests/propose/test_board_browser.py needs chromium and chromium-driver" \
         "(Debian: sudo apt-get install chromium chromium-driver)" >&2
  fi
fi
echo "ftops installed in .venv (extras: ${extras}); try: .venv/bin/ftops --help"
