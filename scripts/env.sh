# Sourced by run.sh and test.sh: the PATH the build needs (cargo's bin, then the pinned
# wasm-opt from tools/ ahead of any system binaryen).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
