#!/bin/sh
# Builds build/module.wasm from src/module.c with clang and wasm-ld (Debian/Ubuntu:
# apt-get install clang lld), then runs the checks `tcpmod serve` runs on it.
set -eu
cd "$(dirname "$0")"
mkdir -p build
# No libc, no allocator, no memory.grow: two 64 KiB pages hold the regions and the
# stack (placed first, so an overflow traps instead of overwriting data). The host
# refuses a memory without a maximum, so the same size is declared as the maximum.
bytes=$((2 * 65536))
# Say in one line what is missing and how to get it, rather than sh's "clang: not found".
cc="${CC:-clang}"
need="build.sh needs clang (for --target=wasm32) and wasm-ld (from lld) to build build/module.wasm; Debian/Ubuntu: apt-get install clang lld"
if ! command -v "$cc" > /dev/null 2>&1; then
  echo "$need (not found: $cc${CC:+, from CC})" >&2
  exit 1
fi
# clang runs the linker it names here (its own directory first, then PATH).
ld="$("$cc" --target=wasm32 -print-prog-name=wasm-ld 2> /dev/null || echo wasm-ld)"
if ! command -v "$ld" > /dev/null 2>&1; then
  echo "$need (not found: wasm-ld)" >&2
  exit 1
fi
"$cc" --target=wasm32 -nostdlib -ffreestanding -fno-builtin -O2 -Wall -Wextra -Werror \
  -I node_modules/tcpmod/include \
  -Wl,--no-entry -Wl,--stack-first -Wl,-z,stack-size=16384 \
  -Wl,--initial-memory=$bytes -Wl,--max-memory=$bytes \
  -o build/module.wasm src/module.c
tcpmod inspect build/module.wasm > /dev/null
echo "built build/module.wasm"
