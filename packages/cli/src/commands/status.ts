/** `grid status`: the node (if one runs), its cache and what it has served. */
import type { Cache } from '@grid/node/server'
import type { GlobalOptions } from '../options.js'
import { noArguments, parseFlags } from '../options.js'
import type { Output } from '../output.js'
import { formatCache, formatStatus } from '../format.js'
import { connectNode } from '../session.js'

export const STATUS_HELP = `usage: grid [global options] status

Shows the node answering on the control socket (id, mode, slots, builds served and the last
one that ended, what it served them: hits, those from peers, compiles here and on peers), its
mesh (swarm, peers, policy, the compile tasks peers sent it, its addresses) and its cache
(entries, bytes). With no node running, shows the cache on disk. A go command run under grid
env prints no summary of its own: the last build here is where to see what it did.`

export async function status (args: string[], options: GlobalOptions, output: Output): Promise<number> {
  const { positional } = parseFlags('status', args, {})
  noArguments('status', positional)
  const client = await connectNode(options)
  if (client === undefined) {
    const cache = await withLocalCache(options.cacheDir, async c => await (await import('@grid/node/server')).cacheStats(c))
    if (options.json) output.out(JSON.stringify({ running: false, control: options.control, cache }))
    else output.out(`node: not running (nothing answers on ${options.control})\n${formatCache(cache)}`)
    return 0
  }
  try {
    const { status: s } = await client.request({ type: 'status' })
    if (options.json) output.out(JSON.stringify({ running: true, ...s }))
    else output.out(formatStatus(s))
  } finally {
    client.close()
  }
  return 0
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
