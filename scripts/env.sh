# Sourced by run.sh and test.sh: the PATH the build needs (cargo's bin, then the pinned
# wasm-opt from tools/ ahead of any system binaryen, and promtool unpacked there).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/tools/node_modules/.bin:$root/tools/promtool/usr/bin:$HOME/.cargo/bin:$PATH"
