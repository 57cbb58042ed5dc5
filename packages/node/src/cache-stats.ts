/**
 * What `grid cache stats`, `grid cache gc` and `grid status` report of a node's disk: the cache,
 * and beside it the worker's store of the inputs peers sent (docs/cache.md), which `--cache-max`
 * and `grid cache gc` do not trim (it keeps each input 3 days from its last use).
 */
import type { CacheStats, GcResult } from '@grid/protocol'
import type { Cache } from './cache/index.js'
import { InputStore, inputStoreDir } from './remote/inputs.js'

export async function cacheStats (cache: Cache): Promise<CacheStats> {
  const [stats, workerInputs] = await Promise.all([cache.stats(), workerInputsOf(cache)])
  return { ...stats, workerInputs }
}

/** `cache.gc`, its stats those of cacheStats: a script reads the same fields after a gc. */
export async function cacheGc (cache: Cache, maxBytes: number, pinned?: (outputHex: string) => boolean): Promise<GcResult> {
  const result = await cache.gc(maxBytes, pinned)
  return { ...result, stats: { ...result.stats, workerInputs: await workerInputsOf(cache) } }
}

async function workerInputsOf (cache: Cache): Promise<{ inputs: number, bytes: number }> {
  return await new InputStore(inputStoreDir(cache.dir)).usage()
}
