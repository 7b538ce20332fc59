#!/usr/bin/env bash
# Builds actionlint from the Go module proxy into a per-user tool cache (once) and prints
# its path. Needs only Go and the module proxy: no GitHub release downloads.
#   ACTIONLINT_VERSION  (default v1.7.12)  pinned version
#   FTOPS_TOOLS         (default ~/.cache/ftops/tools)  where the binary is cached
set -euo pipefail
version="${ACTIONLINT_VERSION:-v1.7.12}"
tools="${FTOPS_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ftops/tools}"
bin="$tools/actionlint-$version"
if [ ! -x "$bin" ]; then
  command -v go >/dev/null || { echo "build_actionlint.sh: Go is required (https://go.dev/dl/)" >&2; exit 1; }
  mkdir -p "$tools"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  GOBIN="$tmp" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@$version" >&2
  mv "$tmp/actionlint" "$bin"
fi
echo "$bin"
