// The OS's accounting of a process: CPU time (utime + stime of every thread, from
// /proc/<pid>/stat) and finding the workerd process Miniflare spawned. Linux only.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

function stat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = s.lastIndexOf(')');
    const comm = s.slice(s.indexOf('(') + 1, close);
    const f = s.slice(close + 2).split(' ');
    // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return { pid, comm, ppid: Number(f[1]), utime: Number(f[11]), stime: Number(f[12]) };
  } catch {
    return null;
  }
}

/** CPU time used so far by `pid` (all its threads), in microseconds. */
export function cpuMicros(pid) {
  const s = stat(pid);
  if (!s) throw new Error(`process ${pid} is gone`);
  return ((s.utime + s.stime) * 1e6) / CLK_TCK;
}

/** Every live process below `root` (children, grandchildren, ...). */
export function descendants(root = process.pid) {
  const all = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = stat(Number(name));
    if (s) all.push(s);
  }
  const out = [];
  const frontier = [root];
  while (frontier.length) {
    const parent = frontier.pop();
    for (const s of all) {
      if (s.ppid === parent) {
        out.push(s);
        frontier.push(s.pid);
      }
    }
  }
  return out;
}

/** The pids of the workerd processes below this one. */
export const workerdPids = () => new Set(descendants().filter((s) => s.comm === 'workerd').map((s) => s.pid));

/** Model name, cores and memory, as the README's table names the machine. */
export function machine() {
  let cpu = 'unknown CPU';
  let mem = 0;
  try {
    cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu;
    mem = Number(/MemTotal:\s*(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    /* not Linux */
  }
  let kernel = '';
  try {
    kernel = execFileSync('uname', ['-sr'], { encoding: 'utf8' }).trim();
  } catch {
    /* no uname */
  }
  let nproc = 0;
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {
    /* no nproc */
  }
  let load = '';
  try {
    load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    /* no loadavg */
  }
  return { cpu, nproc, memoryGiB: Math.round((mem / 2 ** 30) * 10) / 10, kernel, loadAverageAtStart: load };
}
