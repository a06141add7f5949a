#!/usr/bin/env bash
# The GPU check in one call (the device machine: one NVIDIA GPU, nothing to install from a registry):
#   [MNIST_DIR=idx-files-folder] bash bench/gpu.sh [quick|tests|mnist|bench|all]      (default: all)
# Installs what the machine lacks from wheels carried in .whl/ (pytest and friends; cuda-bindings where its python
# has none), opens the CUDA device, runs the op tests with DEV=CUDA, then bench/bench_gpu.py beside torch, and prints
# a short table last. Logs go to $OUT when it is set (the device tool brings that folder back).
# The wheels (git ignores .whl/), fetched on a machine with a registry, for the device's Python 3.12:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl pytest pytest-xdist hypothesis pluggy \
#     iniconfig execnet sortedcontainers cuda-bindings cuda-pathfinder
# MNIST_DIR: a folder of the four MNIST idx files (.gz), carried too: the device machine cannot download them.
set -uo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
out="${OUT:-/tmp/lucidgrad-gpu}"; mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 CACHEDIR="$(mktemp -d)"
need=()
python3 -c "import pytest, xdist, hypothesis" 2>/dev/null || need+=(pytest pytest_xdist hypothesis pluggy iniconfig execnet sortedcontainers)
python3 -c "import cuda.bindings.driver, cuda.bindings.nvrtc" 2>/dev/null || need+=(cuda_bindings cuda_pathfinder)
if ((${#need[@]})); then
  wheels=(); for n in "${need[@]}"; do wheels+=(.whl/"$n"-*.whl); done
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "${wheels[@]}" || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi -L; python3 -c "import cuda.bindings, torch; print('cuda-bindings', cuda.bindings.__version__, '| torch', torch.__version__)"

summary=()
if [[ $what == quick || $what == all || $what == tests ]]; then
  python3 bench/bench_gpu.py --smoke 2>&1 | tee "$out/smoke.log"; summary+=("smoke: exit ${PIPESTATUS[0]}")
fi
if [[ $what == all || $what == tests ]]; then
  tests=(tests/test_ops.py tests/test_math_ops.py tests/test_shape_ops.py tests/test_indexing.py tests/test_dtype.py tests/test_half.py
         tests/test_gradient.py tests/test_nn.py tests/test_nn_functional.py tests/test_optim.py tests/test_transcendental.py tests/test_gpu_path.py
         tests/test_never_silently_wrong.py tests/test_gather_direct.py tests/test_scatter_direct.py
         tests/test_torch_math.py tests/test_torch_shape.py tests/test_torch_nnops.py tests/test_torch_names.py tests/test_module.py
         tests/test_functional_api.py tests/test_rnn.py tests/test_optim_torch.py tests/test_data.py tests/test_interop.py
         tests/test_symbolic_shapes.py tests/test_llama.py tests/test_sampling.py tests/test_profile_trace.py tests/test_realize_reasons.py tests/test_wgmma.py tests/test_tensor_cores.py)
  DEV=CUDA timeout 420 python3 -m pytest "${tests[@]}" -q -n 8 -p no:cacheprovider --maxfail=60 2>&1 | tee "$out/tests.log" | tail -40
  summary+=("tests (DEV=CUDA): $(grep -E '[0-9]+ (passed|failed)' "$out/tests.log" | tail -1)")
fi
if [[ ($what == all || $what == mnist) && -n ${MNIST_DIR:-} ]]; then  # the machine has no network: MNIST_DIR names carried idx files
  DEV=CUDA timeout 300 python3 examples/mnist.py 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tee "$out/mnist.log" | tail -8
  summary+=("main job (DEV=CUDA): $(grep -iE 'accuracy' "$out/mnist.log" | tail -1)")
fi
if [[ $what == all || $what == bench ]]; then
  python3 bench/bench_gpu.py 2>&1 | tee "$out/bench.log"; summary+=("bench: exit ${PIPESTATUS[0]}")
fi
echo; echo "== summary"; printf '%s\n' "${summary[@]}"
[[ -f $out/bench.log ]] && grep -E '^\|' "$out/bench.log"
true
