#!/usr/bin/env bash
# Creates the project's Python venv (.venv) with the pinned emulator and build tooling.
# Idempotent: a venv whose requirements did not change is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.requirements.sha256"
want=$(cat requirements/emulator.txt requirements/build.txt | sha256sum | cut -d' ' -f1)

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi

find_python() {
  local candidates=("${PYTHON313:-}" python3.13 "$HOME/.pyenv/versions/3.13.0/bin/python3")
  local v
  for v in "$HOME"/.pyenv/versions/3.1[3-9]*/bin/python3; do candidates+=("$v"); done
  for c in "${candidates[@]}"; do
    [[ -n "$c" ]] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}

if ! py=$(find_python); then
  echo "error: LocalStack needs Python >= 3.13 and none was found." >&2
  echo "       Install one (e.g. 'pyenv install 3.13') or set PYTHON313=/path/to/python3.13." >&2
  exit 1
fi

echo "==> creating $VENV with $py ($("$py" --version))"
rm -rf "$VENV"
"$py" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements/emulator.txt -r requirements/build.txt
"$VENV/bin/pip" check
echo "$want" > "$STAMP"
