#!/usr/bin/env node
// Copies the hand-written types of the native shim (host/native/native.d.ts)
// to dist/native/native.d.ts, next to the dist/sys.d.ts that imports them: tsc
// emits declarations only for .ts sources and never copies a .d.ts, so without
// this the published typings would import a file that is not there. Runs after
// tsc in `npm run build:host`.

import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const from = join(root, "host", "native", "native.d.ts");
const to = join(root, "dist", "native", "native.d.ts");
mkdirSync(dirname(to), { recursive: true });
copyFileSync(from, to);
