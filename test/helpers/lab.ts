/**
 * The lab (scripts/lab, docs/lab.md) for tests: an office LAN of network namespaces on a bridge,
 * each host rate-shaped and under a CPU quota. Needs root; `labAvailable()` says why not.
 * Node builtins only.
 */
import { access, constants, readFile } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { defer, processRunning, ROOT, run, seedShim, type RunResult } from './index.js'

export const LAB_SCRIPT = join(ROOT, 'scripts/lab')
/** Network and CPU probes to run in lab hosts (see the top of the file for the commands). */
export const LAB_PROBE = join(ROOT, 'scripts/lib/lab-probe.js')
export const LAB_GRID_BIN = join(ROOT, 'packages/cli/bin/grid.js')

type Ctx = { after: (fn: () => unknown) => void }

export interface LabOptions {
  hosts: number
  /** cores per host (cgroup quota); default 0.5; 'max' for none */
  cpu?: number | 'max'
  /** tc tbf rate of each host's link, e.g. '1gbit' (default), '100mbit'; 'none' for no shaping */
  rate?: string
  /** default: a unique one per call */
  prefix?: string
}

export interface LabHost {
  /** 'h1', 'h2', … */
  name: string
  /** 10.77.0.<i> */
  ip: string
  /** /tmp/<prefix>/h<i> */
  dir: string
  /** the grid cache dir the lab gives this host's daemon and `run` (GRID_CACHE) */
  cache: string
  /** the control socket (GRID_CONTROL) */
  control: string
  /** the host's own GOCACHE (set by `run` and `start`) */
  gocache: string
  /** the network namespace */
  netns: string
  /** the cgroup-v1 cpu dir holding the host's processes */
  cgroup: string
}

export type LabResult = RunResult

export interface Lab {
  prefix: string
  hosts: LabHost[]
  /** `scripts/lab start HOST -- args…`: resolves once the daemon's control socket is there */
  start: (host: string | number, args?: string[]) => Promise<void>
  /** `scripts/lab start-all -- args…` ({ip}, {host}, {dir}, {n} in args become each host's) */
  startAll: (args?: string[]) => Promise<void>
  /** SIGTERM, SIGKILL after 5 s */
  stop: (host: string | number) => Promise<void>
  /** runs CMD in the host's namespace and cgroup, with its GRID_CACHE, GRID_CONTROL and GOCACHE */
  run: (host: string | number, cmd: string, args?: string[], options?: { timeoutMs?: number }) => Promise<LabResult>
  /** the daemon's pid, if one runs */
  daemonPid: (host: string | number) => Promise<number | undefined>
  /** idempotent; also registered with t.after */
  down: () => Promise<void>
}

async function onPath (name: string): Promise<boolean> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin']
  for (const dir of dirs) {
    if (dir === '') continue
    try {
      await access(join(dir, name), constants.X_OK)
      return true
    } catch {}
  }
  return false
}

/** undefined when the lab can run here, else the reason to skip. */
export async function labAvailable (): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'the lab needs Linux (network namespaces, tc, cgroups)'
  if (process.getuid?.() !== 0) return 'the lab needs root (network namespaces, tc and cgroups)'
  // root in a container may still lack the capabilities: CAP_NET_ADMIN (12), CAP_SYS_ADMIN (21)
  try {
    const status = await readFile('/proc/self/status', 'utf8')
    const hex = /^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1]
    if (hex !== undefined) {
      const caps = BigInt('0x' + hex)
      if ((caps & (1n << 12n)) === 0n) return 'the lab needs CAP_NET_ADMIN'
      if ((caps & (1n << 21n)) === 0n) return 'the lab needs CAP_SYS_ADMIN (ip netns)'
    }
  } catch {}
  if (!await onPath('ip')) return "the lab needs 'ip' (iproute2)"
  if (!await onPath('tc')) return "the lab needs 'tc' (iproute2)"
  try {
    await access('/sys/fs/cgroup/cpu/cpu.cfs_quota_us', constants.W_OK)
  } catch {
    return 'the lab needs the cgroup-v1 cpu controller at /sys/fs/cgroup/cpu'
  }
  return undefined
}

let made = 0

/** `scripts/lab up` with a unique prefix; `scripts/lab down` runs when the test ends. */
export async function createLab (t: Ctx, options: LabOptions): Promise<Lab> {
  const prefix = options.prefix ?? `gt${process.pid.toString(36)}${(made++).toString(36)}${Math.random().toString(36).slice(2, 5)}`
  const lab = async (args: string[], timeoutMs?: number): Promise<LabResult> => await run(LAB_SCRIPT, ['--prefix', prefix, ...args], { timeoutMs: timeoutMs ?? 120_000, killSignal: 'SIGKILL' })
  const must = async (args: string[], timeoutMs?: number): Promise<LabResult> => {
    const r = await lab(args, timeoutMs)
    if (r.code !== 0) throw new Error(`scripts/lab ${args.join(' ')} failed (exit ${r.code ?? r.signal}):\n${r.stderr}${r.stdout}`)
    return r
  }
  let isDown = false
  const down = async (): Promise<void> => {
    isDown = true
    await must(['down'])
  }
  defer(t, async () => { if (!isDown) await down() })

  const up = ['up', String(options.hosts)]
  if (options.cpu !== undefined) up.push('--cpu', String(options.cpu))
  if (options.rate !== undefined) up.push('--rate', options.rate)
  await must(up)

  const hosts: LabHost[] = []
  for (let i = 1; i <= options.hosts; i++) {
    const dir = `/tmp/${prefix}/h${i}`
    hosts.push({ name: `h${i}`, ip: `10.77.0.${i}`, dir, cache: join(dir, 'cache'), control: join(dir, 'grid.sock'), gocache: join(dir, 'gocache'), netns: `${prefix}-h${i}`, cgroup: `/sys/fs/cgroup/cpu/${prefix}-h${i}` })
  }
  for (const h of hosts) await seedShim(h.cache)
  const hostName = (h: string | number): string => typeof h === 'number' ? `h${h}` : h
  const host = (h: string | number): LabHost => {
    const found = hosts.find(x => x.name === hostName(h))
    if (found === undefined) throw new Error(`no host ${hostName(h)} in lab ${prefix}`)
    return found
  }

  return {
    prefix,
    hosts,
    start: async (h, args = []) => { await must(['start', hostName(h), '--', ...args]) },
    startAll: async (args = []) => { await must(['start-all', '--', ...args]) },
    stop: async (h) => { await must(['stop', hostName(h)]) },
    run: async (h, cmd, args = [], runOptions = {}) => await lab(['run', hostName(h), '--', cmd, ...args], runOptions.timeoutMs),
    daemonPid: async (h) => {
      const pid = Number((await readFile(join(host(h).dir, 'daemon.pid'), 'utf8').catch(() => '')).trim())
      return pid > 0 && await processRunning(pid) ? pid : undefined
    },
    down
  }
}
