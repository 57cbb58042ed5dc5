/**
 * What `grid cache stats` and `grid status` report of a node's disk: the cache, and beside it
 * the worker's store of the inputs peers sent (docs/cache.md), which `--cache-max` and
 * `grid cache gc` do not trim (it keeps each input 3 days from its last use).
 */
import type { CacheStats } from '@grid/protocol'
import type { Cache } from './cache/index.js'
import { InputStore, inputStoreDir } from './remote/inputs.js'

export async function cacheStats (cache: Cache): Promise<CacheStats> {
  const [stats, workerInputs] = await Promise.all([cache.stats(), new InputStore(inputStoreDir(cache.dir)).usage()])
  return { ...stats, workerInputs }
}
