/** `grid stop`: asks the daemon on the control socket to stop, and waits until it is gone. */
import { GridError, errorCode, type NodeStatus } from '@grid/protocol'
import type { GlobalOptions } from '../options.js'
import { noArguments, parseFlags } from '../options.js'
import type { Output } from '../output.js'
import { connectNode } from '../session.js'

export const STOP_HELP = `usage: grid [global options] stop

Stops the daemon that answers on the control socket (grid daemon, in the foreground or
started with --detach) and waits until its process has exited, so that a new daemon (after
upgrading Go or grid, say) can start on the same cache. Builds it was serving go on without
it: their compiles run in go's own processes and their puts go to a temporary dir. With no
daemon running there is nothing to do, and grid stop says so and exits 0. The embedded node
of a running grid build is not stopped: it stops when its builds end.`

/** How long a daemon may take to stop: its mesh, its peers' streams, the cache index. */
const STOP_TIMEOUT_MS = 30_000
const POLL_MS = 100

export async function stop (args: string[], options: GlobalOptions, output: Output): Promise<number> {
  const { positional } = parseFlags('stop', args, {})
  noArguments('stop', positional)
  const client = await connectNode(options)
  if (client === undefined) {
    if (options.json) output.out(JSON.stringify({ stopped: false, running: false, control: options.control }))
    else output.err(`grid: no daemon answers on ${options.control}: nothing to stop`)
    return 0
  }
  let node: NodeStatus
  try {
    node = (await client.request({ type: 'status' })).status
    if (node.mode !== 'daemon') {
      throw new GridError('GRID_ERR_DAEMON_STOP', `the node on ${options.control} is the embedded node of a running grid build (pid ${node.pid}): it stops when its builds end`, {
        hint: 'wait for that build to finish, or interrupt it'
      })
    }
    await client.request({ type: 'shutdown' }).catch((err: unknown) => {
      // the node may close the connection as it stops, before its `ok` has left
      if (errorCode(err) !== 'GRID_ERR_NODE_CLOSED') throw err
    })
  } finally {
    client.close()
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

/** Waits until the node's socket no longer answers and its process has exited. */
async function waitUntilGone (node: NodeStatus, options: GlobalOptions): Promise<void> {
  const deadline = Date.now() + STOP_TIMEOUT_MS
  for (;;) {
    const client = await connectNode(options)
    client?.close()
    if (client === undefined && !alive(node.pid)) return
    if (Date.now() > deadline) {
      throw new GridError('GRID_ERR_DAEMON_STOP', `the daemon (pid ${node.pid}) was asked to stop ${STOP_TIMEOUT_MS / 1000} s ago and is still running${client === undefined ? '' : ` and answering on ${options.control}`}`, {
        hint: `its log may say why; kill ${node.pid} ends it (builds it serves go on without it)`
      })
    }
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
}

/** Whether a process with this pid exists (the daemon runs on this machine: its socket is local). */
function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
