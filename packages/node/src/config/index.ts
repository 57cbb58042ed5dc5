/**
 * The node's configuration: defaults, then the config file, then command-line flags (the CLI
 * merges those). The file is JSON; unknown keys and wrong types are refused by name, and the
 * result is frozen.
 *
 *   { "listen": ["/ip4/0.0.0.0/tcp/4770"], "bootstrap": ["/ip4/10.0.0.5/tcp/4770/p2p/12D3…"],
 *     "mdns": true, "swarmKey": "/path/to/swarm.key", "acceptRemote": "idle", "slots": 4,
 *     "mesh": true, "trust": "mesh", "verify": 1, "cacheMax": "20G", "compileHeap": "512M" }
 */
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve, dirname } from 'node:path'
import { GridError, MAX_SLOTS, POLICIES, errorCode, parseSize, type Policy } from '@grid/protocol'
import { DEFAULT_PORT } from '../mesh/constants.js'

export interface NodeConfig {
  /** run the libp2p mesh at all */
  mesh: boolean
  listen: string[]
  bootstrap: string[]
  mdns: boolean
  /** path of the swarm key file; undefined: none (the open mesh) */
  swarmKey: string | undefined
  acceptRemote: Policy
  slots: number | undefined
  /** whose cache entries to accept from peers */
  trust: 'mesh' | 'self'
  /** share of peer claims re-checked by compiling locally, 0–100 */
  verify: number
  /** trim the cache past this many bytes */
  cacheMax: number | undefined
  /** when to offer compiles to peers: never, busy (all local slots taken), always */
  offload: 'never' | 'busy' | 'always'
  /** address space a peer's compile may use on this node (bytes) */
  taskMemory: number
  /** the compilers' starting heap in MiB (`-d=gcstart`); undefined: COMPILE_START_HEAP_MB, 0: theirs */
  compileHeapMB: number | undefined
}

/**
 * Default of `taskMemory`: a compile of a peer's task may map this much address space
 * (`ulimit -v`). The Go runtime maps ~0.6 GiB before it compiles anything (1 GiB is the
 * smallest power of two a trivial compile passes under); `runtime`, among the largest std
 * packages, compiles under 2 GiB. 4 GiB leaves room for big generated packages and stops a
 * pathological task long before it takes the workstation's memory.
 */
export const DEFAULT_TASK_MEMORY = 4 * 1024 ** 3

export const DEFAULT_LISTEN = [`/ip4/0.0.0.0/tcp/${DEFAULT_PORT}`]

/** `$XDG_CONFIG_HOME/grid`, else `~/.config/grid`. */
export function configDir (env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CONFIG_HOME
  return join(xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.config'), 'grid')
}

/** `$GRID_CONFIG`, else `<config dir>/config.json`. */
export function defaultConfigPath (env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.GRID_CONFIG
  return explicit !== undefined && explicit !== '' ? explicit : join(configDir(env), 'config.json')
}

/**
 * Where `grid init` writes the swarm key, and where a node looks for one by default: beside the
 * config file (so `GRID_CONFIG=/x/config.json` also means `/x/swarm.key`).
 */
export function defaultSwarmKeyPath (configPath: string = defaultConfigPath()): string {
  return join(dirname(configPath), 'swarm.key')
}

const FILE_HINT = 'fix the file, or point GRID_CONFIG / --config elsewhere'

function bad (path: string, message: string): GridError {
  return new GridError('GRID_ERR_CONFIG', `${path}: ${message}`, { hint: FILE_HINT })
}

async function checkAddrs (path: string, key: string, value: unknown): Promise<string[]> {
  if (!Array.isArray(value) || !value.every(v => typeof v === 'string')) throw bad(path, `"${key}" must be an array of multiaddr strings`)
  for (const a of value) await checkMultiaddr(a, `${path}: "${key}"`)
  return value
}

/**
 * The multiaddr parser is loaded on first use: it takes ~35 ms to load, and most `grid`
 * commands (a build against a running daemon) never parse an address.
 */
export async function checkMultiaddr (addr: string, where: string): Promise<void> {
  const { multiaddr } = await import('@multiformats/multiaddr')
  try {
    multiaddr(addr)
  } catch (err) {
    throw new GridError('GRID_ERR_CONFIG', `${where}: not a multiaddr: ${addr}`, { cause: err, hint: 'e.g. /ip4/192.168.1.20/tcp/4770' })
  }
}

export function checkTrust (value: unknown, where: string): 'mesh' | 'self' {
  if (value !== 'mesh' && value !== 'self') throw new GridError('GRID_ERR_CONFIG', `${where} must be mesh or self, got ${JSON.stringify(value)}`)
  return value
}

export function checkOffload (value: unknown, where: string): 'never' | 'busy' | 'always' {
  if (value !== 'never' && value !== 'busy' && value !== 'always') throw new GridError('GRID_ERR_CONFIG', `${where} must be never, busy or always, got ${JSON.stringify(value)}`)
  return value
}

export function checkPercent (value: unknown, where: string): number {
  // a plain decimal (`5`, `0.5`, `5%`): Number() would take '' for 0 and `0x10` for 16
  const n = typeof value === 'string' ? (/^\d+(\.\d+)?%?$/.test(value) ? Number(value.replace(/%$/, '')) : NaN) : value
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || n > 100) throw new GridError('GRID_ERR_CONFIG', `${where} must be a percentage 0–100, got ${JSON.stringify(value)}`)
  return n
}

export function checkPolicy (value: unknown, where: string): Policy {
  if (!(POLICIES as readonly unknown[]).includes(value)) {
    throw new GridError('GRID_ERR_CONFIG', `${where} must be one of ${POLICIES.join(', ')}, got ${JSON.stringify(value)}`)
  }
  return value as Policy
}

/** A task memory limit: at least 1 GiB, below which no compile can start. */
export function checkTaskMemory (bytes: number, where: string): number {
  if (!Number.isSafeInteger(bytes) || bytes < 1024 ** 3) {
    throw new GridError('GRID_ERR_CONFIG', `${where} must be at least 1G (the Go runtime alone maps ~0.6 GiB), got ${bytes} bytes`)
  }
  return bytes
}

/**
 * A compiler's starting heap (`compileHeap`, `--compile-heap`) from a size in bytes: 0 keeps the
 * compiler's own (128 MiB), else at least 16 MiB, at most 64 GiB; in whole MiB.
 */
export function checkCompileHeap (bytes: number, where: string): number {
  if (bytes === 0) return 0
  if (!Number.isSafeInteger(bytes) || bytes < 16 * 1024 ** 2 || bytes > 64 * 1024 ** 3) {
    throw new GridError('GRID_ERR_CONFIG', `${where} must be 0 (the compiler's own) or a size from 16M to 64G, got ${bytes} bytes`)
  }
  return Math.floor(bytes / 1024 ** 2)
}

/** How a check names a key of the config file: `/path/config.json: "offload"`. */
function inFile (path: string, key: string): string {
  return `${path}: "${key}"`
}

/** A size in the config file, "20G" or a number of bytes; a bad one is the file's error. */
/** A size (`"20G"`, or bytes) of at least `min` bytes. */
function sizeIn (path: string, key: string, value: unknown, min = 0): number {
  let bytes: number | undefined
  if (Number.isSafeInteger(value)) bytes = value as number
  else if (typeof value === 'string') { try { bytes = parseSize(value) } catch {} }
  if (bytes !== undefined && bytes >= min) return bytes
  throw bad(path, `"${key}" must be a size like "20G" or a number of bytes${min > 0 ? ' above 0' : ''}, got ${JSON.stringify(value)}`)
}

/** Reads the config file (a missing default file is fine; a missing explicit one is not). */
export async function loadConfig (path: string, options: { explicit?: boolean } = {}): Promise<Readonly<NodeConfig>> {
  const config: NodeConfig = {
    mesh: true, listen: DEFAULT_LISTEN, bootstrap: [], mdns: true, swarmKey: undefined, acceptRemote: 'idle', slots: undefined, trust: 'mesh', verify: 0, cacheMax: undefined, offload: 'busy', taskMemory: DEFAULT_TASK_MEMORY, compileHeapMB: undefined
  }
  let text: string | undefined
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || options.explicit === true) throw bad(path, `cannot read: ${(err as Error).message}`)
  }
  if (text !== undefined) {
    let raw: unknown
    try { raw = JSON.parse(text) } catch (err) { throw bad(path, `not JSON: ${(err as Error).message}`) }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad(path, 'must be a JSON object')
    try {
      for (const [key, value] of Object.entries(raw)) {
        switch (key) {
          case 'mesh': case 'mdns':
            if (typeof value !== 'boolean') throw bad(path, `"${key}" must be true or false`)
            config[key] = value
            break
          case 'listen': case 'bootstrap':
            config[key] = await checkAddrs(path, key, value)
            break
          case 'swarmKey':
            if (typeof value !== 'string') throw bad(path, '"swarmKey" must be a path')
            config.swarmKey = resolve(dirname(path), value)
            break
          case 'acceptRemote':
            config.acceptRemote = checkPolicy(value, inFile(path, key))
            break
          case 'slots':
            if (!Number.isInteger(value) || (value as number) < 1) throw bad(path, '"slots" must be a positive integer')
            // every member refuses an advert of more (decodeAdvert): the node would be listed by none
            if ((value as number) > MAX_SLOTS) throw bad(path, `"slots" must be at most ${MAX_SLOTS}`)
            config.slots = value as number
            break
          case 'trust':
            config.trust = checkTrust(value, inFile(path, key))
            break
          case 'verify':
            config.verify = checkPercent(value, inFile(path, key))
            break
          case 'cacheMax':
            config.cacheMax = sizeIn(path, key, value, 1)
            break
          case 'offload':
            config.offload = checkOffload(value, inFile(path, key))
            break
          case 'taskMemory':
            config.taskMemory = checkTaskMemory(sizeIn(path, key, value), inFile(path, key))
            break
          case 'compileHeap':
            config.compileHeapMB = checkCompileHeap(sizeIn(path, key, value), inFile(path, key))
            break
          default:
            throw bad(path, `unknown key "${key}" (known: mesh, listen, bootstrap, mdns, swarmKey, acceptRemote, slots, trust, verify, cacheMax, offload, taskMemory, compileHeap)`)
        }
      }
    } catch (err) {
      // the value checks are shared with the command line: add the file's hint here
      if (errorCode(err) === 'GRID_ERR_CONFIG' && (err as GridError).hint === undefined) {
        throw new GridError('GRID_ERR_CONFIG', (err as Error).message, { cause: err, hint: FILE_HINT })
      }
      throw err
    }
  }
  return Object.freeze(config)
}
