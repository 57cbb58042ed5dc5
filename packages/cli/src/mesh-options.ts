/**
 * Turns the config file plus command-line flags into the node's mesh options. Flags win:
 * `--listen` replaces the configured list, `--bootstrap` adds to it. The swarm key is the
 * flag's file, else the config's, else `swarm.key` beside the config file if it exists (where `grid init`
 * writes it), else none (the open mesh).
 */
import { existsSync } from 'node:fs'
import { GridError, errorCode } from '@grid/protocol'
import { checkCompileHeap, checkMultiaddr, checkOffload, checkPercent, checkPolicy, checkTaskMemory, checkTrust, defaultSwarmKeyPath, loadConfig, type MeshOptions, type NodeConfig } from '@grid/node'
import { sizeFlag, type GlobalOptions } from './options.js'

export interface MeshFlags {
  listen?: string[]
  bootstrap?: string[]
  noMdns?: boolean
  swarmKey?: string
  acceptRemote?: string
  noMesh?: boolean
  trust?: string
  verify?: string
  offload?: string
  taskMemory?: string
}

export async function nodeConfig (options: GlobalOptions): Promise<Readonly<NodeConfig>> {
  return await loadConfig(options.configPath, { explicit: options.configExplicit })
}

export async function meshOptions (config: Readonly<NodeConfig>, configPath: string, flags: MeshFlags = {}): Promise<MeshOptions | undefined> {
  // Every flag is checked, also for a node without a mesh: a typo is refused, not ignored.
  for (const a of flags.listen ?? []) await flagValue(async () => { await checkMultiaddr(a, '--listen') })
  for (const a of flags.bootstrap ?? []) await flagValue(async () => { await checkMultiaddr(a, '--bootstrap') })
  const defaultKey = defaultSwarmKeyPath(configPath)
  const { acceptRemote, trust, verify, offload, taskMemory } = flags
  const options: MeshOptions = {
    listen: flags.listen !== undefined && flags.listen.length > 0 ? flags.listen : config.listen,
    bootstrap: [...config.bootstrap, ...(flags.bootstrap ?? [])],
    mdns: flags.noMdns === true ? false : config.mdns,
    swarmKeyFile: flags.swarmKey ?? config.swarmKey ?? (existsSync(defaultKey) ? defaultKey : undefined),
    policy: acceptRemote !== undefined ? await flagValue(() => checkPolicy(acceptRemote, '--accept-remote')) : config.acceptRemote,
    trust: trust !== undefined ? await flagValue(() => checkTrust(trust, '--trust')) : config.trust,
    verifyPercent: verify !== undefined ? await flagValue(() => checkPercent(verify, '--verify')) : config.verify,
    offload: offload !== undefined ? await flagValue(() => checkOffload(offload, '--offload')) : config.offload,
    taskMemory: taskMemory !== undefined ? await flagValue(() => checkTaskMemory(sizeFlag(taskMemory, '--task-memory'), '--task-memory')) : config.taskMemory
  }
  return flags.noMesh === true || !config.mesh ? undefined : options
}

/** `--compile-heap SIZE`: the compilers' starting heap in MiB (0: the compiler's own). */
export async function compileHeapFlag (value: string): Promise<number> {
  return await flagValue(() => checkCompileHeap(sizeFlag(value, '--compile-heap'), '--compile-heap'))
}

/**
 * Runs a check of a command-line value. The checks are the config file's, where a bad value is
 * GRID_ERR_CONFIG; on the command line it is a usage error (exit 2), as for any other flag.
 */
async function flagValue<T> (check: () => T | Promise<T>): Promise<T> {
  try {
    return await check()
  } catch (err) {
    if (errorCode(err) !== 'GRID_ERR_CONFIG') throw err
    throw new GridError('GRID_ERR_USAGE', (err as Error).message, { cause: err, hint: (err as GridError).hint ?? 'run `grid daemon --help` for the values' })
  }
}
