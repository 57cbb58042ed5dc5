/** `grid daemon`: a long-lived node on the control socket and in the mesh, until SIGINT/SIGTERM. */
import { join } from 'node:path'
import { DEFAULT_PORT, PEER_TIMEOUT_MS, closeLogging, configureLogging } from '@grid/node'
import { meshOptions, nodeConfig } from '../mesh-options.js'
import type { GlobalOptions } from '../options.js'
import { parseFlags, usageError } from '../options.js'
import type { Output } from '../output.js'
import { parseSize } from '@grid/protocol'

export const DAEMON_HELP = `usage: grid [global options] daemon [flags]

Runs a grid node in the foreground: it serves builds on the control socket, keeps the cache
index open and joins the office mesh. Logs go to stderr and to <cache>/logs/grid.log. Stops on
SIGINT or SIGTERM.

  --listen MULTIADDR        listen address, repeatable (default /ip4/0.0.0.0/tcp/${DEFAULT_PORT})
  --bootstrap MULTIADDR     a member to dial, repeatable (with or without /p2p/<id>);
                            added to "bootstrap" in the config file
  --no-mdns                 do not discover peers with mDNS on the LAN
  --swarm-key FILE          talk only to nodes holding this key (default: the config's
                            "swarmKey", else swarm.key beside the config file, i.e.
                            ~/.config/grid/swarm.key, if it exists; see grid init)
  --accept-remote POLICY    always | idle | never: whether this node takes compiles from peers
                            (idle: only while the workstation's own load is low; default idle)
  --slots N                 local compile slots (default: the number of cores)
  --trust mesh|self         cache entries to accept from peers: signed by any member (mesh,
                            default) or none, only this node's own (self)
  --verify PERCENT          re-check this share of the entries peers offer by compiling locally
                            and comparing; a mismatch marks the producer untrusted (default 0)
  --cache-max SIZE          trim the cache, least recently used first, past SIZE (e.g. 20G)
  --offload POLICY          never | busy | always: when this node's builds send compiles to
                            idle peers (busy, default: while every local slot is taken)
  --task-memory SIZE        address space a peer's compile may use here (ulimit -v; default
                            4G, at least 1G)
  --no-mesh                 serve this machine only: no libp2p at all

Peers whose adverts stop for ${PEER_TIMEOUT_MS / 1000} s are dropped; a peer that goes away is
redialled with backoff, bootstrap addresses for as long as the daemon runs.`

export async function daemon (args: string[], options: GlobalOptions, output: Output): Promise<number> {
  const { flags, positional } = parseFlags('daemon', args, {
    slots: 'string', listen: 'list', bootstrap: 'list', 'no-mdns': 'bool', 'swarm-key': 'string', 'accept-remote': 'string', 'no-mesh': 'bool',
    trust: 'string', verify: 'string', 'cache-max': 'string', offload: 'string', 'task-memory': 'string'
  })
  if (positional.length > 0) throw usageError(`grid daemon takes no arguments, got ${positional.join(' ')}`)
  const config = await nodeConfig(options)
  const slots = flags.slots === undefined ? config.slots : Number(flags.slots)
  if (slots !== undefined && (!Number.isInteger(slots) || slots < 1)) throw usageError(`--slots must be a positive integer, got ${flags.slots}`)
  const mesh = await meshOptions(config, options.configPath, {
    ...(flags.listen === undefined ? {} : { listen: flags.listen }),
    ...(flags.bootstrap === undefined ? {} : { bootstrap: flags.bootstrap }),
    ...(flags['swarm-key'] === undefined ? {} : { swarmKey: flags['swarm-key'] }),
    ...(flags['accept-remote'] === undefined ? {} : { acceptRemote: flags['accept-remote'] }),
    ...(flags.trust === undefined ? {} : { trust: flags.trust }),
    ...(flags.verify === undefined ? {} : { verify: flags.verify }),
    ...(flags.offload === undefined ? {} : { offload: flags.offload }),
    ...(flags['task-memory'] === undefined ? {} : { taskMemory: flags['task-memory'] }),
    noMdns: flags['no-mdns'] === true,
    noMesh: flags['no-mesh'] === true
  })
  const cacheMax = flags['cache-max'] !== undefined ? parseSize(flags['cache-max']) : config.cacheMax
  configureLogging({ stderr: 'info', file: join(options.cacheDir, 'logs', 'grid.log') })
  const { GridNode } = await import('@grid/node/server')
  const node = new GridNode({
    cacheDir: options.cacheDir,
    control: options.control,
    mode: 'daemon',
    ...(slots === undefined ? {} : { slots }),
    ...(mesh === undefined ? {} : { mesh }),
    ...(cacheMax === undefined ? {} : { cacheMax })
  })
  await node.start()
  const status = await node.status()
  if (options.json) output.out(JSON.stringify({ nodeId: node.nodeId, control: node.control, cacheDir: node.cacheDir, pid: process.pid, mesh: status.mesh }))
  else {
    output.err(`grid daemon ${node.nodeId} serving ${node.control} (cache ${node.cacheDir}, ${node.pool.slots} slots)`)
    if (status.mesh !== null) output.err(`mesh: swarm ${status.mesh.swarm}, listening on\n  ${status.mesh.addrs.join('\n  ')}`)
  }
  await new Promise<void>(resolve => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
    void node.shutdownRequested.then(resolve)
  })
  await node.stop()
  await closeLogging()
  return 0
}
