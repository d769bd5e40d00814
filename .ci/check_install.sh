#!/usr/bin/env bash
# `make check-install`: a plain (non-editable) `pip install .` works. Builds a wheel, installs it with --no-deps
# into a fresh virtual environment that borrows the dependencies from the development one (.venv), and from a
# directory outside the repository imports defistress, lists, validates and runs built-in scenarios.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEV="$ROOT/.venv"
WORK="$ROOT/build/check-install"
rm -rf "$WORK" && mkdir -p "$WORK/dist" "$WORK/elsewhere"

"$DEV/bin/python" -m pip wheel --no-deps --wheel-dir "$WORK/dist" "$ROOT" > "$WORK/wheel.log" 2>&1 \
  || { cat "$WORK/wheel.log"; exit 1; }
WHEEL="$(ls "$WORK"/dist/defistress-*.whl)"

python_bin="$(readlink -f "$DEV/bin/python")"
"$python_bin" -m venv "$WORK/venv"
# the dependencies come from the development environment's site-packages: a plain path entry, so its .pth files
# (the editable install's import hook among them) are not processed
dev_site="$("$DEV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
new_site="$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$dev_site" > "$new_site/zz_dev_dependencies.pth"
"$WORK/venv/bin/python" -m pip install --quiet --no-deps "$WHEEL"

cd "$WORK/elsewhere"
"$WORK/venv/bin/python" - "$WORK/venv" <<'PY'
import sys
from pathlib import Path

import defistress
from defistress import run_scenario  # noqa: F401  (the lazy entry points resolve)

where = Path(defistress.__file__).resolve()
assert Path(sys.argv[1]).resolve() in where.parents, f"defistress imported from {where}, not the fresh install"
import defistress.sim.engine.model  # noqa: F401,E402

print("import defistress:", defistress.__version__, "from", where.parent)
PY
"$WORK/venv/bin/defistress" list > /dev/null
"$WORK/venv/bin/defistress" validate black-thursday-maker  # its historic data files are in the wheel
"$WORK/venv/bin/defistress" run calm --quiet --no-report --out runs/calm \
  --set 'run.duration="2h"' --set agents.borrowers.accounts=500
test -s runs/calm/summary.json
echo "check-install: OK ($(basename "$WHEEL"))"
