/** `grid stop`: asks the daemon on the control socket to stop, and waits until it is gone. */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { ControlClient } from '@grid/node'
import { GridError, errorCode, type NodeStatus } from '@grid/protocol'
import type { GlobalOptions } from '../options.js'
import { noArguments, parseFlags } from '../options.js'
import type { Output } from '../output.js'
import { processExists } from '../pid.js'
import { connectNode } from '../session.js'
import { viaNodeOrCache } from './status.js'

export const STOP_HELP = `usage: grid [global options] stop

Stops the daemon that answers on the control socket (grid daemon, in the foreground or
started with --detach) and waits until its process has exited, so that a new daemon (after
upgrading Go or grid, say) can start on the same cache. Builds it was serving go on without
it: their compiles run in go's own processes and their puts go to a temporary dir. A daemon
that is starting (it holds the cache before its socket answers) is waited for, up to 15 s, and
stopped. With no daemon running there is nothing to do, and grid stop says so and exits 0. The
embedded node of a running grid build is not stopped: it stops when its builds end.`

/** How long a daemon may take to stop: its mesh, its peers' streams, the cache index. */
const STOP_TIMEOUT_MS = 30_000
const POLL_MS = 100

export async function stop (args: string[], options: GlobalOptions, output: Output): Promise<number> {
  const { positional } = parseFlags('stop', args, {})
  noArguments('stop', positional)
  // A daemon that is starting holds its cache before its socket answers: wait for it, and stop
  // it, rather than say there is nothing to stop and leave it running a moment later. With no
  // cache index there is no node, and nothing to open (or create) to find that out.
  const node = !existsSync(join(options.cacheDir, 'index'))
    ? await connectNode(options).then(async client => client === undefined ? undefined : await shutdown(client, options))
    : await viaNodeOrCache(options, async client => await shutdown(client, options), async () => undefined)
  if (node === undefined) {
    if (options.json) output.out(JSON.stringify({ stopped: false, running: false, control: options.control }))
    else output.err(`grid: no daemon answers on ${options.control}: nothing to stop`)
    return 0
  }
  await waitUntilGone(node, options)
  if (options.json) {
    output.out(JSON.stringify({ stopped: true, running: false, nodeId: node.nodeId, pid: node.pid, control: options.control, activeBuilds: node.activeBuilds }))
  } else {
    const builds = node.activeBuilds === 0 ? '' : `; ${node.activeBuilds} build${node.activeBuilds === 1 ? '' : 's'} it was serving went on without it`
    output.err(`grid: stopped daemon ${node.nodeId} (pid ${node.pid})${builds}`)
  }
  return 0
}

/** Asks the daemon on `client` to stop; its status as it was asked. */
async function shutdown (client: ControlClient, options: GlobalOptions): Promise<NodeStatus> {
  try {
    const node = (await client.request({ type: 'status' })).status
    if (node.mode !== 'daemon') {
      throw new GridError('GRID_ERR_DAEMON_STOP', `the node on ${options.control} is the embedded node of a running grid build (pid ${node.pid}): it stops when its builds end`, {
        hint: 'wait for that build to finish, or interrupt it'
      })
    }
    await client.request({ type: 'shutdown' }).catch((err: unknown) => {
      // the node may close the connection as it stops, before its `ok` has left
      if (errorCode(err) !== 'GRID_ERR_NODE_CLOSED') throw err
    })
    return node
  } finally {
    client.close()
  }
}

/** Waits until the node's socket no longer answers and its process has exited. */
async function waitUntilGone (node: NodeStatus, options: GlobalOptions): Promise<void> {
  const deadline = Date.now() + STOP_TIMEOUT_MS
  for (;;) {
    const client = await connectNode(options)
    client?.close()
    if (client === undefined && !processExists(node.pid)) return // its socket is local: so is its pid
    if (Date.now() > deadline) {
      throw new GridError('GRID_ERR_DAEMON_STOP', `the daemon (pid ${node.pid}) was asked to stop ${STOP_TIMEOUT_MS / 1000} s ago and is still running${client === undefined ? '' : ` and answering on ${options.control}`}`, {
        hint: `its log may say why; kill ${node.pid} ends it (builds it serves go on without it)`
      })
    }
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
}
