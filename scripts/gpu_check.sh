#!/usr/bin/env bash
# The one GPU check of issue 12 (see scripts/gpu_check.py for what it measures).
#
#   scripts/gpu_check.sh prepare   # here, on the CPU: fills the git-ignored gpu_check/
#   scripts/gpu_check.sh           # on one H100 or H200 (carry gpu_check/): under 8 minutes,
#                                  # one process tree, report in $OUT/gpu_check.json
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [[ ${1:-run} == prepare ]]; then
    exec "$python" scripts/gpu_check.py prepare
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout --kill-after=10 470 "$python" scripts/gpu_check.py run
