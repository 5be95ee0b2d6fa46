#!/bin/sh
# Builds kv.wasm from kv.c with clang and wasm-ld (lld); no libc, no WASI.
#   sh examples/c-kv/build.sh [OUT]      (default: kv.wasm next to this script)
# CC overrides the compiler (e.g. CC=clang-14).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/kv.wasm"}
cc=${CC:-clang}

# Memory: the module has no allocator and never calls memory.grow, so all it
# needs is its static data (a 4 KiB input region, an 8 KiB output region, a few
# bytes more) and the stack, placed first so that an overflow traps instead of
# overwriting data. Two 64 KiB pages hold that; declaring the same maximum tells
# the host the instance never needs more (the host refuses a memory without a
# maximum, and one above its cap, 32 MiB by default).
pages=2
bytes=$((pages * 65536))

"$cc" --target=wasm32 -nostdlib -ffreestanding -fno-builtin -O2 -Wall -Wextra -Werror \
  -I "$here/../../include" \
  -Wl,--no-entry \
  -Wl,--stack-first -Wl,-z,stack-size=16384 \
  -Wl,--initial-memory=$bytes -Wl,--max-memory=$bytes \
  -o "$out" "$here/kv.c"
echo "built $out"
