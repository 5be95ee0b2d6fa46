// Reading /proc: which processes make up a server (its process group), their
// CPU time (user + system, from /proc/PID/stat), their resident memory
// (VmRSS from /proc/PID/status) and open descriptors.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticksPerSecond = 0;
/** USER_HZ, the unit of the times in /proc/PID/stat. */
export function clockTicks() {
  if (!ticksPerSecond) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** The fields of /proc/PID/stat after "(comm)", as strings; null when the process is gone. */
function statFields(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

// Indexes into statFields(): the field numbers of proc(5) minus 3.
const F_PGRP = 2;
const F_UTIME = 11;
const F_STIME = 12;
const F_CUTIME = 13;
const F_CSTIME = 14;

/** PIDs of every live (non-zombie) process in process group pgid. */
export function groupPids(pgid) {
  const pids = [];
  for (const name of readdirSync('/proc')) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    const f = statFields(name);
    if (f && Number(f[F_PGRP]) === pgid && f[0] !== 'Z' && f[0] !== 'X') pids.push(Number(name));
  }
  return pids;
}

/**
 * CPU seconds (user + system) used so far by every process of the group,
 * including children they already reaped (cutime/cstime), so that a worker
 * exiting mid-run is not lost. All threads of a process are in its own times.
 */
export function groupCpuSeconds(pgid) {
  let ticks = 0;
  for (const pid of groupPids(pgid)) {
    const f = statFields(pid);
    if (!f) continue;
    ticks += Number(f[F_UTIME]) + Number(f[F_STIME]) + Number(f[F_CUTIME]) + Number(f[F_CSTIME]);
  }
  return ticks / clockTicks();
}

/** VmRSS of one process in KiB (0 when gone). */
export function rssKiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Summed VmRSS of the group in KiB. */
export function groupRssKiB(pgid) {
  return groupPids(pgid).reduce((sum, pid) => sum + rssKiB(pid), 0);
}

/** Open file descriptors of the group's processes (sockets included). */
export function groupFdCount(pgid) {
  let n = 0;
  for (const pid of groupPids(pgid)) {
    try {
      n += readdirSync(`/proc/${pid}/fd`).length;
    } catch {
      // gone
    }
  }
  return n;
}

/**
 * Context switches so far (voluntary + nonvoluntary, from
 * /proc/PID/task/TID/status) of every thread of every process of the group: a
 * sleep/wake per event shows here. Threads that exit mid-run take theirs along.
 */
export function groupContextSwitches(pgid) {
  let n = 0;
  for (const pid of groupPids(pgid)) {
    let tids;
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        const s = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
        for (const m of s.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm)) n += Number(m[1]);
      } catch {
        // gone
      }
    }
  }
  return n;
}
