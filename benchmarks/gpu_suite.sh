#!/usr/bin/env bash
# The GPU suite (benchmarks/gpu_suite.py) on a machine that has only torch + transformers preinstalled.
#
# PyAV is the one runtime dependency such an image may lack. If `import av` fails, the wheel carried in .whl/
# (git-ignored) is installed into a private folder and put on PYTHONPATH; nothing is installed system-wide.
# Fetch the wheel beforehand, on a machine with a package index (abi3: one wheel serves Python 3.11-3.13):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0
# The package itself runs from this checkout's src/ (no install needed).
#
# Usage: benchmarks/gpu_suite.sh [--dry-run] [--output FILE] [--attn auto|sdpa|flash_attention_2|...]
#   default output: $OUT/gpu_suite.md when OUT is set, else ./gpu_suite.md
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-python3}"

if ! "$PY" -c "import av" 2>/dev/null; then
    shopt -s nullglob
    wheels=(.whl/av-*.whl)
    if [ ${#wheels[@]} -eq 0 ]; then
        echo "error: PyAV is not importable and no av wheel is in .whl/ (see the header of $0 for the download)" >&2
        exit 2
    fi
    site="${TMPDIR:-/tmp}/cope_gpu_site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${wheels[@]}" \
        || { echo "error: installing ${wheels[*]} failed" >&2; exit 2; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c "import av" || { echo "error: PyAV still not importable after installing ${wheels[*]}" >&2; exit 2; }
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_suite.py "$@"
