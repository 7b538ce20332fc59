#!/usr/bin/env bash
# Creates .venv/ and installs ftops with the training stack (LLaMA-Factory, torch,
# DeepSpeed, MLflow). `--dev` adds the test and lint tools and, when run as root on a
# Debian/Ubuntu machine, the Debian packages of the local cluster's real node
# (containerd, runc, CNI plugins, iptables, conntrack) and of the training image's build
# without Docker (buildah, debootstrap). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="train"
if [ "${1:-}" = "--dev" ]; then extras="train,dev"; fi
node_packages="containerd runc containernetworking-plugins iptables conntrack iproute2 buildah debootstrap gcc libc6-dev"
if [ "${1:-}" = "--dev" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    missing=""
    for pkg in $node_packages; do
      dpkg -s "$pkg" > /dev/null 2>&1 || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
      echo "installing Debian packages for the real node:$missing"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing > /dev/null
    fi
  else
    echo "note: the real-node tests need root and the Debian packages: $node_packages"
  fi
fi
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c scripts/constraints.txt -e ".[${extras}]"
echo "ftops installed in .venv (extras: ${extras}); try: .venv/bin/ftops --help"
