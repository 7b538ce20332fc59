#!/usr/bin/env bash
# Creates .venv/ and installs ftops with the training stack (LLaMA-Factory, torch,
# DeepSpeed, MLflow). `--dev` adds the test and lint tools, GitHub's Markdown CSS (npm
# github-markdown-css, into .venv/npm) and, as root with apt, Debian packages: chromium
# and chromium-driver for the browser tests (tests/propose/test_board_browser.py,
# tests/browse/test_readme_browser.py), and the local cluster's real node (containerd,
# runc, CNI plugins, iptables, conntrack) with the training image's build without
# Docker (buildah, debootstrap, gcc). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="train"
if [ "${1:-}" = "--dev" ]; then extras="train,dev"; fi
# Debian packages --dev needs, installed as root with apt (what is there already is kept):
# the browser tests' (with their recommended packages), and the real node's (without)
browser_packages="chromium chromium-driver fonts-liberation"
node_packages="containerd runc containernetworking-plugins iptables conntrack iproute2 buildah debootstrap gcc libc6-dev"
apt_install() {  # <apt-get install options> -- <packages>
  local opts=() missing=() pkg
  while [ "$1" != "--" ]; do opts+=("$1"); shift; done
  shift
  for pkg in "$@"; do dpkg -s "$pkg" > /dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${opts[@]}" "${missing[@]}" > /dev/null
  else
    echo "note: the browser and real-node tests need root and the Debian packages: ${missing[*]}" >&2
  fi
}
if [ "${1:-}" = "--dev" ]; then
  # shellcheck disable=SC2086
  apt_install -- $browser_packages
  # shellcheck disable=SC2086
  apt_install --no-install-recommends -- $node_packages
fi
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
fi
echo "ftops installed in .venv (extras: ${extras}); try: .venv/bin/ftops --help"
