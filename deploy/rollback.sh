#!/usr/bin/env bash
# Roll back to a previous release: run the current release's down scripts to the
# schema that release knows, then check that release out and reinstall it.
#
#   deploy/rollback.sh [--no-install] <git-ref-of-previous-release>
#
# --no-install skips reinstalling into the local virtualenv (platform deployments
# redeploy the previous release's build instead).
# Needs DATABASE_URL (or the embedded default's DATA_DIR) as the server uses it.
# Afterwards restart the web processes; `python -m server version` shows both versions.
set -euo pipefail
cd "$(dirname "$0")/.."

install=yes
if [ "${1:-}" = "--no-install" ]; then install=""; shift; fi
ref="${1:?usage: deploy/rollback.sh [--no-install] <git-ref-of-previous-release>}"
python="${PYTHON:-.venv/bin/python}"

git rev-parse --verify --quiet "$ref^{commit}" > /dev/null || {
  echo "rollback: unknown release $ref" >&2; exit 2; }

# The highest migration the previous release ships is the schema it runs on.
target=$(git ls-tree --name-only "$ref" schema/ \
  | sed -n 's#^schema/\([0-9][0-9]*\)_.*\.up\.sql$#\1#p' | sort -n | tail -1)
target=$((10#${target:-0}))

echo "rollback: schema -> $target (down scripts of the current release)"
"$python" -m server migrate --to "$target"

echo "rollback: checking out $ref"
git checkout --quiet --detach "$ref"
if [ -n "$install" ]; then "$python" -m pip install --quiet -e .; fi

"$python" -m server version
echo "rollback: done; restart the web processes"
