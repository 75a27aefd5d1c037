#!/usr/bin/env bash
# Refresh scripts/constraints.txt on purpose: install airfix with its test extras into a fresh
# virtual environment at the newest versions pyproject.toml's ranges allow, write them to the
# lock, then run the whole suite against exactly that environment.  Commit the new lock only
# when the suite is green (a canary that flipped says in its docstring what to do).
# Usage: scripts/lock.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
EXTRAS="test,airflow,python-tools"

venv="$(mktemp -d)/venv"
"$PY" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$EXTRAS]"

lock=scripts/constraints.txt
{
  sed -n '/^#/p' "$lock"
  "$venv/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check \
    | grep -v -i '^airfix[= @]' | sort -f
} > "$lock.new"
mv "$lock.new" "$lock"
echo "wrote $lock ($(grep -vc '^#' "$lock") pins); running the suite against it in $venv"
git --no-pager diff --stat -- "$lock" || true
PYTHON="$venv/bin/python" exec bash scripts/test.sh "$@"
