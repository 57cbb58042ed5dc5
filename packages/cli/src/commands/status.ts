/** `grid status`: the node (if one runs), its cache and what it has served. */
import type { ControlClient } from '@grid/node'
import type { Cache } from '@grid/node/server'
import { errorCode, type CacheStats, type NodeStatus } from '@grid/protocol'
import type { GlobalOptions } from '../options.js'
import { noArguments, parseFlags } from '../options.js'
import type { Output } from '../output.js'
import { formatCache, formatStatus } from '../format.js'
import { connectNode } from '../session.js'

export const STATUS_HELP = `usage: grid [global options] status

Shows the node answering on the control socket (id, mode, pid, its log file, slots, builds
served and the last one that ended, what it served them: hits, those from peers, compiles here
and on peers), its mesh (swarm, peers, policy, the compile tasks peers sent it, its addresses;
or why it did not start, when its builds run alone) and its cache (entries, bytes). With no
node running, shows the cache on disk; a daemon that is starting or stopping (it holds the
cache while its socket does not answer) is waited for, up to 15 s. A go command run under grid
env prints no summary of its own: the last build here is where to see what it did.`

export async function status (args: string[], options: GlobalOptions, output: Output): Promise<number> {
  const { positional } = parseFlags('status', args, {})
  noArguments('status', positional)
  type Found = { running: true, node: NodeStatus } | { running: false, cache: CacheStats }
  const found = await viaNodeOrCache<Found>(options,
    async client => ({ running: true as const, node: (await client.request({ type: 'status' })).status }),
    async cache => ({ running: false as const, cache: await (await import('@grid/node/server')).cacheStats(cache) }))
  if (found.running) {
    if (options.json) output.out(JSON.stringify({ running: true, ...found.node }))
    else output.out(formatStatus(found.node))
  } else {
    if (options.json) output.out(JSON.stringify({ running: false, control: options.control, cache: found.cache }))
    else output.out(`node: not running (nothing answers on ${options.control})\n${formatCache(found.cache)}`)
  }
  return 0
}

/** How long a command waits for a cache held by a node that does not answer (yet, or any more). */
export const LOCKED_WAIT_MS = 15_000
const LOCKED_POLL_MS = 100

/**
 * `viaNode` on the node that answers on the control socket, else `direct` on the cache opened
 * here. A daemon holds the cache before its socket answers (it opens the index first, then
 * starts its mesh: seconds) and after its socket has closed (it closes the index last), so a
 * cache that is held while nothing answers, or a node that closes the connection as we ask,
 * is a node starting or stopping: ask again, until LOCKED_WAIT_MS. Then the lock's holder is
 * something else (a daemon on another socket, a grid cache command), GRID_ERR_CACHE_LOCKED.
 */
export async function viaNodeOrCache<T> (options: GlobalOptions, viaNode: (client: ControlClient) => Promise<T>, direct: (cache: Cache) => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCKED_WAIT_MS
  for (;;) {
    const client = await connectNode(options)
    try {
      return client !== undefined ? await viaNode(client) : await withLocalCache(options.cacheDir, direct)
    } catch (err) {
      const code = errorCode(err)
      const passing = code === 'GRID_ERR_CACHE_LOCKED' || (client !== undefined && code === 'GRID_ERR_NODE_CLOSED')
      if (!passing || Date.now() >= deadline) throw err
    } finally {
      client?.close()
    }
    await new Promise(resolve => setTimeout(resolve, LOCKED_POLL_MS))
  }
}

/** Opens the cache in this process (no node runs, so nobody else holds it). */
export async function withLocalCache<T> (cacheDir: string, fn: (cache: Cache) => Promise<T>): Promise<T> {
  const { Cache, loadIdentity, prepareCacheDir } = await import('@grid/node/server')
  await prepareCacheDir(cacheDir)
  const identity = await loadIdentity(cacheDir)
  const cache = await Cache.open({ dir: cacheDir, nodeId: identity.peerId })
  try {
    return await fn(cache)
  } finally {
    await cache.close()
  }
}
