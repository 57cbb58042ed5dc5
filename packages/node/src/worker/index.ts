export { LocalPool, withConcurrency, withStartHeap, takesStartHeap, type CompileJob, type CompileOutcome, type LocalPoolInit } from './pool.js'
export { DEFAULT_SLOTS } from './constants.js'
export { RankedQueue, type Rank } from './ranked.js'
export { Spawner, SpawnerGone, type SpawnOptions, type SpawnResult } from './spawner.js'
