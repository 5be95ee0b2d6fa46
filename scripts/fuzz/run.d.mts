// Types of run.mjs for its TypeScript importer (test/fuzz.e2e.test.ts).

export interface FuzzReport {
  seed: number;
  ok: boolean;
  /** What did not hold; empty when the round passed. */
  problems: string[];
  commands: number;
  byWhere: Record<string, number>;
  byTerminal: Record<string, number>;
  /** Faults the commands must have caused (a case ending in a fault run in on_data, the trap after i and D). */
  expectedFaults: number;
  faults: number;
  faultsByKind: Record<string, number>;
  closedByReason: Record<string, number>;
  logDroppedBytes: number;
  instances: number;
  /** Echo exchanges of the well-behaved client. */
  good: number;
  /** [baseline, end] */
  fds: [number, number];
  rssMiB: [number, number];
  /** Only for a failed round: the server's last log lines and the module kept for replay. */
  stderrTail?: string;
  module?: string;
}

export function fuzzRound(opts: {
  seed: number; durationMs?: number; threads?: number; parallel?: number; loops?: boolean; log?: (line: string) => void;
}): Promise<FuzzReport>;
