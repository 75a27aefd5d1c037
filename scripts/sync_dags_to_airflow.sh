#!/usr/bin/env bash
# Deploy this repository's Airflow DAGs into an Airflow DAGs folder, checked first; see --help.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MANIFEST_NAME=".airfix-dags.manifest"

usage() {
  cat <<'EOF'
Usage: scripts/sync_dags_to_airflow.sh [--copy | --symlink] [--dry-run] [--cleanup] [--auto-unpause]
                                       [--dags-folder DIR] [--source DIR] [--python PY]

Deploys every DAG file of this repository (dags/*.py, found automatically) into Airflow's DAGs
folder.  Before anything is deployed, every file is compiled and imported through Airflow's DagBag
and must define at least one DAG: one failure and nothing is deployed (exit 1).

  --copy           copy the files (default; re-run after every change)
  --symlink        link the files instead (development: edits show up in Airflow directly)
  --dry-run        check the files and print what would be done; change nothing
  --cleanup        remove DAG files this script deployed earlier whose source is gone, and delete
                   their DAGs' metadata (airflow dags delete); nothing else is touched
  --auto-unpause   unpause this repository's DAGs (only those) once Airflow has parsed them
  --dags-folder D  where to deploy (default: $AIRFLOW__CORE__DAGS_FOLDER, else Airflow's
                   [core] dags_folder, else $AIRFLOW_HOME/dags, else ~/airflow/dags)
  --source D       the DAG files to deploy (default: dags/ of this repository)
  --python PY      the Python that has apache-airflow and airfix installed (default: the one next
                   to `airflow` on PATH, else python3)
  -h, --help       this text

What this repository deployed is recorded in <dags folder>/.airfix-dags.manifest (file, sha256,
DAG ids), so --cleanup and --auto-unpause act on this repository's DAGs only; a file of the same
name that this script did not deploy is never overwritten, and one changed since it was deployed
is never removed.  The DAGs import airfix from the installed package: pip install -e ".[airflow]".
Exit codes: 0 done, 1 a check or a step failed, 2 bad usage.
EOF
}

mode=copy dry_run=0 cleanup=0 unpause=0 dest="" source="$ROOT/dags" py=""
while [ $# -gt 0 ]; do
  case "$1" in
    --copy) mode=copy ;;
    --symlink) mode=symlink ;;
    --dry-run) dry_run=1 ;;
    --cleanup) cleanup=1 ;;
    --auto-unpause) unpause=1 ;;
    --dags-folder) [ $# -ge 2 ] || { echo "--dags-folder needs a directory" >&2; exit 2; }; dest="$2"; shift ;;
    --source) [ $# -ge 2 ] || { echo "--source needs a directory" >&2; exit 2; }; source="$2"; shift ;;
    --python) [ $# -ge 2 ] || { echo "--python needs an interpreter" >&2; exit 2; }; py="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "sync_dags: $*"; }
fail() { echo "sync_dags: $*" >&2; exit 1; }

if [ -z "$py" ]; then
  if command -v airflow >/dev/null 2>&1 && [ -x "$(dirname "$(command -v airflow)")/python" ]; then
    py="$(dirname "$(command -v airflow)")/python"
  else
    py="python3"
  fi
fi
"$py" -c "import airflow, airfix.airflow_glue" 2>/dev/null \
  || fail "$py cannot import apache-airflow and airfix: pip install -e \"$ROOT[airflow]\" (or pass --python)"
airflow_cli() { "$py" -m airflow "$@"; }

[ -d "$source" ] || fail "no DAG source folder $source"
source="$(cd "$source" && pwd)"
if [ -z "$dest" ]; then
  dest="${AIRFLOW__CORE__DAGS_FOLDER:-}"
  [ -n "$dest" ] || dest="$(airflow_cli config get-value core dags_folder 2>/dev/null || true)"
  [ -n "$dest" ] || dest="${AIRFLOW_HOME:-$HOME/airflow}/dags"
fi
manifest="$dest/$MANIFEST_NAME"

mapfile -t files < <(find "$source" -maxdepth 1 -type f -name '*.py' ! -name '_*' | sort)
[ "${#files[@]}" -gt 0 ] || fail "no DAG files (*.py) in $source"

# --- check: compile and import every file through a DagBag; print "<file>\t<dag ids>" per file --
checked="$(mktemp)"
trap 'rm -f "$checked"' EXIT
if ! "$py" - "$checked" "${files[@]}" >/dev/null <<'PY'
import py_compile, sys
from airflow.dag_processing.dagbag import DagBag

bad = 0
with open(sys.argv[1], "w") as out:
    for path in sys.argv[2:]:
        try:
            py_compile.compile(path, doraise=True)
        except py_compile.PyCompileError as exc:
            print(f"{path}: syntax error: {exc.msg}", file=sys.stderr)
            bad += 1
            continue
        bag = DagBag(dag_folder=path, safe_mode=False)
        for where, error in bag.import_errors.items():
            print(f"{where}: import error:\n{error}", file=sys.stderr)
            bad += 1
        ids = sorted(bag.dags)
        if not bag.import_errors and not ids:
            print(f"{path}: defines no DAG", file=sys.stderr)
            bad += 1
        out.write(f"{path}\t{','.join(ids)}\n")
sys.exit(1 if bad else 0)
PY
then
  fail "a DAG file failed its check (above); nothing was deployed"
fi
declare -A dag_ids=()
while IFS=$'\t' read -r path ids; do dag_ids["$(basename "$path")"]="$ids"; done <"$checked"
say "checked ${#files[@]} DAG file(s) in $source: $(awk -F'\t' '{n=split($1,p,"/"); printf "%s%s (%s)", sep, p[n], $2; sep=", "}' "$checked")"

# --- what this repository deployed before --------------------------------------------------------
declare -A old_hash=() old_ids=()
if [ -f "$manifest" ]; then
  while IFS=$'\t' read -r name hash ids; do
    case "$name" in ''|'#'*) continue ;; esac
    old_hash["$name"]="$hash"; old_ids["$name"]="$ids"
  done <"$manifest"
fi
sha() { sha256sum "$1" | cut -d' ' -f1; }
ours() {  # a file in the DAGs folder that this repository put there and nobody changed since
  local name="$1" target="$dest/$1"
  if [ -L "$target" ]; then
    case "$(readlink "$target")" in "$source"/*) return 0 ;; *) return 1 ;; esac
  fi
  [ -f "$target" ] && [ -n "${old_hash[$name]:-}" ] && [ "$(sha "$target")" = "${old_hash[$name]}" ]
}

for f in "${files[@]}"; do
  name="$(basename "$f")"
  if [ -e "$dest/$name" ] || [ -L "$dest/$name" ]; then
    ours "$name" || [ -n "${old_hash[$name]:-}" ] \
      || fail "$dest/$name exists and was not deployed by this script; not overwriting it (nothing was deployed)"
  fi
done

# --- deploy ------------------------------------------------------------------------------------------
if [ "$dry_run" = 1 ]; then
  for f in "${files[@]}"; do say "would $mode $f -> $dest/$(basename "$f")"; done
else
  mkdir -p "$dest"
  new_manifest="$(mktemp "$dest/.airfix-manifest.XXXXXX")"
  echo "# deployed by $ROOT/scripts/sync_dags_to_airflow.sh from $source ($mode); name, sha256, DAG ids" >"$new_manifest"
  for f in "${files[@]}"; do
    name="$(basename "$f")"
    if [ "$mode" = symlink ]; then
      ln -sfn "$f" "$dest/$name"
    else
      tmp="$(mktemp "$dest/.$name.XXXXXX")"
      cp "$f" "$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$dest/$name"
    fi
    printf '%s\t%s\t%s\n' "$name" "$(sha "$f")" "${dag_ids[$name]}" >>"$new_manifest"
  done
  say "deployed ${#files[@]} DAG file(s) to $dest ($mode)"
fi

# --- cleanup: only files this repository deployed earlier and whose source is gone --------------------
stale_ids=()
if [ "$cleanup" = 1 ]; then
  for name in "${!old_hash[@]}"; do
    [ -n "${dag_ids[$name]+x}" ] && continue
    if ours "$name"; then
      if [ "$dry_run" = 1 ]; then
        say "would remove stale $dest/$name (DAGs: ${old_ids[$name]})"
      else
        rm -f "$dest/$name"
        say "removed stale $dest/$name (DAGs: ${old_ids[$name]})"
      fi
    elif [ -e "$dest/$name" ] || [ -L "$dest/$name" ]; then
      say "left $dest/$name in place: it changed since it was deployed"
      continue
    fi
    IFS=, read -r -a gone <<<"${old_ids[$name]}"
    stale_ids+=("${gone[@]}")
  done
fi
if [ "$dry_run" = 0 ]; then
  # earlier files that are still there stay recorded, so a later --cleanup can still judge them
  for name in "${!old_hash[@]}"; do
    if [ -z "${dag_ids[$name]+x}" ] && { [ -e "$dest/$name" ] || [ -L "$dest/$name" ]; }; then
      printf '%s\t%s\t%s\n' "$name" "${old_hash[$name]}" "${old_ids[$name]}" >>"$new_manifest"
    fi
  done
  chmod 644 "$new_manifest" && mv -f "$new_manifest" "$manifest"
fi
for id in "${stale_ids[@]}"; do
  [ -n "$id" ] || continue
  if [ "$dry_run" = 1 ]; then
    say "would delete the metadata of stale DAG $id"
  elif airflow_cli dags delete -y "$id" >/dev/null 2>&1; then
    say "deleted the metadata of stale DAG $id"
  else
    say "no metadata to delete for stale DAG $id"
  fi
done

# --- auto-unpause: this repository's DAGs, nothing else ------------------------------------------------
if [ "$unpause" = 1 ]; then
  ours_ids=()
  for name in "${!dag_ids[@]}"; do IFS=, read -r -a ids <<<"${dag_ids[$name]}"; ours_ids+=("${ids[@]}"); done
  pattern="^($(printf '%s\n' "${ours_ids[@]}" | sort | sed 's/[.]/\\./g' | paste -sd'|'))\$"
  if [ "$dry_run" = 1 ]; then
    say "would unpause ${ours_ids[*]}"
  else
    # parse now, so DAGs that are new to Airflow exist in its database before they are unpaused
    airflow_cli dags reserialize >/dev/null 2>&1 || fail "airflow dags reserialize failed; is the database migrated?"
    airflow_cli dags unpause -y --treat-dag-id-as-regex "$pattern" >/dev/null \
      || fail "airflow dags unpause failed for ${ours_ids[*]}"
    say "unpaused ${ours_ids[*]}"
  fi
fi
[ "$dry_run" = 1 ] && say "dry run: nothing was changed"
exit 0
