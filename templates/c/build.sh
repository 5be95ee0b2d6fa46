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
"${CC:-clang}" --target=wasm32 -nostdlib -ffreestanding -fno-builtin -O2 -Wall -Wextra -Werror \
  -I node_modules/tcpmod/include \
  -Wl,--no-entry -Wl,--stack-first -Wl,-z,stack-size=16384 \
  -Wl,--initial-memory=$bytes -Wl,--max-memory=$bytes \
  -o build/module.wasm src/module.c
tcpmod inspect build/module.wasm > /dev/null
echo "built build/module.wasm"
