/** `grid daemon`: a long-lived node on the control socket, until SIGINT/SIGTERM or `shutdown`. */
import { join } from 'node:path'
import { GridNode, closeLogging, configureLogging } from '@grid/node'
import type { GlobalOptions } from '../options.js'
import { parseFlags, usageError } from '../options.js'
import type { Output } from '../output.js'

export const DAEMON_HELP = `usage: grid [global options] daemon [--slots N]

Runs a grid node in the foreground: it serves builds on the control socket and keeps the cache
index open. Logs go to stderr and to <cache>/logs/grid.log. Stops on SIGINT or SIGTERM.

  --slots N   local compile slots (default: the number of cores)`

export async function daemon (args: string[], options: GlobalOptions, output: Output): Promise<number> {
  const { flags, positional } = parseFlags('daemon', args, { slots: 'string' })
  if (positional.length > 0) throw usageError(`grid daemon takes no arguments, got ${positional.join(' ')}`)
  const slots = flags.slots === undefined ? undefined : Number(flags.slots)
  if (slots !== undefined && (!Number.isInteger(slots) || slots < 1)) throw usageError(`--slots must be a positive integer, got ${flags.slots}`)
  configureLogging({ stderr: 'info', file: join(options.cacheDir, 'logs', 'grid.log') })
  const node = new GridNode({ cacheDir: options.cacheDir, control: options.control, mode: 'daemon', ...(slots === undefined ? {} : { slots }) })
  await node.start()
  if (options.json) output.out(JSON.stringify({ nodeId: node.nodeId, control: node.control, cacheDir: node.cacheDir, pid: process.pid }))
  else output.err(`grid daemon ${node.nodeId} serving ${node.control} (cache ${node.cacheDir}, ${node.pool.slots} slots)`)
  await new Promise<void>(resolve => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
    void node.shutdownRequested.then(resolve)
  })
  await node.stop()
  await closeLogging()
  return 0
}
