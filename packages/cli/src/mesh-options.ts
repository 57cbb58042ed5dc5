/**
 * Turns the config file plus command-line flags into the node's mesh options. Flags win:
 * `--listen` replaces the configured list, `--bootstrap` adds to it. The swarm key is the
 * flag's file, else the config's, else `swarm.key` beside the config file if it exists (where `grid init`
 * writes it), else none (the open mesh).
 */
import { existsSync } from 'node:fs'
import { parseSize } from '@grid/protocol'
import { checkMultiaddr, checkOffload, checkPercent, checkPolicy, checkTaskMemory, checkTrust, defaultSwarmKeyPath, loadConfig, type MeshOptions, type NodeConfig } from '@grid/node'
import type { GlobalOptions } from './options.js'

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
  if (flags.noMesh === true || !config.mesh) return undefined
  for (const a of [...(flags.listen ?? []), ...(flags.bootstrap ?? [])]) await checkMultiaddr(a, 'command line')
  const defaultKey = defaultSwarmKeyPath(configPath)
  return {
    listen: flags.listen !== undefined && flags.listen.length > 0 ? flags.listen : config.listen,
    bootstrap: [...config.bootstrap, ...(flags.bootstrap ?? [])],
    mdns: flags.noMdns === true ? false : config.mdns,
    swarmKeyFile: flags.swarmKey ?? config.swarmKey ?? (existsSync(defaultKey) ? defaultKey : undefined),
    policy: flags.acceptRemote !== undefined ? checkPolicy(flags.acceptRemote, '--accept-remote') : config.acceptRemote,
    trust: flags.trust !== undefined ? checkTrust(flags.trust, '--trust') : config.trust,
    verifyPercent: flags.verify !== undefined ? checkPercent(flags.verify, '--verify') : config.verify,
    offload: flags.offload !== undefined ? checkOffload(flags.offload, '--offload') : config.offload,
    taskMemory: flags.taskMemory !== undefined ? checkTaskMemory(parseSize(flags.taskMemory), '--task-memory') : config.taskMemory
  }
}
