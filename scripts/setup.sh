#!/usr/bin/env bash
# Creates .venv/ and installs ftops with the training stack (LLaMA-Factory, torch,
# DeepSpeed, MLflow). `--dev` adds the test and lint tools, GitHub's Markdown CSS (npm
# github-markdown-css, into .venv/npm) and, as root with apt, Debian's chromium and
# chromium-driver for the browser tests (tests/propose/test_board_browser.py,
# tests/browse/test_readme_browser.py). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="train"
if [ "${1:-}" = "--dev" ]; then extras="train,dev"; fi
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c scripts/constraints.txt -e ".[${extras}]"
if [ "${1:-}" = "--dev" ]; then
  # how GitHub shows a README: its stylesheet, in a real headless browser
  css_version="5.9.0"
  if [ ! -f ".venv/npm/node_modules/github-markdown-css/package.json" ] \
      || ! grep -q "\"version\": \"${css_version}\"" .venv/npm/node_modules/github-markdown-css/package.json; then
    if command -v npm >/dev/null 2>&1; then
      npm install --silent --no-audit --no-fund --prefix .venv/npm "github-markdown-css@${css_version}" >/dev/null
    else
      echo "note: the README browser test needs npm (Node.js) for github-markdown-css" >&2
    fi
  fi
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-liberation >/dev/null
    else
      echo "note: the browser tests need chromium and chromium-driver" \
           "(Debian: sudo apt-get install chromium chromium-driver)" >&2
    fi
  fi
fi
echo "ftops installed in .venv (extras: ${extras}); try: .venv/bin/ftops --help"
