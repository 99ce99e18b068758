#!/usr/bin/env bash
# Plots of issue 17.4's benchmarks: makes matplotlib's virtual environment when it is missing,
# then runs scripts/bench-plot.py with it (arguments pass through; default: the CSVs in
# docs/bench/ -> PNGs beside them). The environment lives outside the repository:
#   python3 -m venv /root/.cache/switchyard/plot-venv && /root/.cache/switchyard/plot-venv/bin/pip install matplotlib
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SWITCHYARD_PLOT_VENV:-/root/.cache/switchyard/plot-venv}"
if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    echo "bench-plot: installing matplotlib into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet matplotlib
fi
exec "$VENV/bin/python" scripts/bench-plot.py "$@"
