#!/usr/bin/env bash
# The training image's base, by digest: the root Dockerfile's `ARG BASE_IMAGE=` default
# as is when it names a digest, else that tag resolved to its digest now (one lookup, so
# the whole build uses exactly one base image). Prints it; in GitHub Actions it is also
# the step's output `image` (the image workflow builds with it and names it in its pull
# request). Needs `docker buildx` for a tag.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)
if [[ -z "$base" ]]; then
  echo "base_image.sh: no \`ARG BASE_IMAGE=<image>\` line in Dockerfile" >&2
  exit 1
fi
if [[ "$base" != *@sha256:* ]]; then
  digest=$(docker buildx imagetools inspect "$base" | awk '$1 == "Digest:" {print $2; exit}')
  if [[ ! "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
    echo "base_image.sh: could not resolve the digest of $base" >&2
    exit 1
  fi
  base="$base@$digest"
fi
echo "$base"
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
  echo "image=$base" >> "$GITHUB_OUTPUT"
fi
