#!/usr/bin/env bash
# CI: rebuild the widgets' Markdown bundle from package-lock.json and fail if it differs
# from the committed one (streamnb/static/markdown.bundle.js and its LICENSES file).
set -euo pipefail
cd "$(dirname "$0")/.."
outputs=(streamnb/static/markdown.bundle.js streamnb/static/markdown.bundle.LICENSES.txt)
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
if ! git diff --quiet --exit-code -- "${outputs[@]}"; then
  git diff --stat -- "${outputs[@]}"
  echo "The committed Markdown bundle is not what 'npm ci && npm run build' produces." >&2
  echo "Rebuild it (npm ci && npm run build) and commit streamnb/static/markdown.bundle.*" >&2
  exit 1
fi
if [ -n "$(git status --porcelain -- "${outputs[@]}")" ]; then
  echo "The Markdown bundle is not committed: npm run build, then git add streamnb/static/markdown.bundle.*" >&2
  exit 1
fi
echo "markdown bundle: up to date ($(wc -c < streamnb/static/markdown.bundle.js) bytes)"
