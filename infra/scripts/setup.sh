#!/usr/bin/env bash
# Installs the infra tooling: the .venv-infra Python venv (SAM CLI, cfn-lint, checkov,
# aws-sam-translator from requirements/infra.txt) and infra/cdk/node_modules (npm ci).
# Idempotent: each part is redone only when its lock input changed (stamp = sha256).
#   infra/scripts/setup.sh
# Env: PYTHON_INFRA=/path/to/python3.x to choose the interpreter (3.11-3.13).
set -euo pipefail
cd "$(dirname "$0")/../.."

export SAM_CLI_TELEMETRY=0

VENV=.venv-infra
PY_STAMP="$VENV/.requirements.sha256"
py_want=$(sha256sum requirements/infra.txt | cut -d' ' -f1)

find_python() {
  local c
  for c in "${PYTHON_INFRA:-}" python3.13 "$HOME/.pyenv/versions/3.13.0/bin/python3" \
           python3.11 "$HOME/.pyenv/versions/3.11.7/bin/python3" python3; do
    [[ -n "$c" ]] || continue
    if command -v "$c" >/dev/null 2>&1 &&
       "$c" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 13)))' 2>/dev/null; then
      command -v "$c"
      return 0
    fi
  done
  return 1
}

if [[ -x "$VENV/bin/python" && -f "$PY_STAMP" && "$(cat "$PY_STAMP")" == "$py_want" ]]; then
  echo "infra venv up to date ($VENV)"
else
  if ! py=$(find_python); then
    echo "error: the infra tooling needs Python 3.11-3.13 and none was found." >&2
    echo "       Install one (e.g. 'pyenv install 3.13') or set PYTHON_INFRA=/path/to/python3." >&2
    exit 1
  fi
  echo "==> creating $VENV with $py ($("$py" --version))"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements/infra.txt
  "$VENV/bin/pip" check
  echo "$py_want" > "$PY_STAMP"
fi

CDK=infra/cdk
NODE_STAMP="$CDK/node_modules/.package-lock.sha256"
node_want=$(sha256sum "$CDK/package-lock.json" | cut -d' ' -f1)
if [[ -d "$CDK/node_modules" && -f "$NODE_STAMP" && "$(cat "$NODE_STAMP")" == "$node_want" ]]; then
  echo "CDK node_modules up to date ($CDK/node_modules)"
else
  if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm not found; the CDK app needs Node.js >= 20 with npm." >&2
    exit 1
  fi
  echo "==> npm ci in $CDK"
  (cd "$CDK" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$node_want" > "$NODE_STAMP"
fi
