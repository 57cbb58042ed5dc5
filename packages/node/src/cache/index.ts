export { Cache, hex, type CacheInit, type CacheHit, type EntryOrigin } from './cache.js'
export { blobPathFor } from './layout.js'
export { AbsentFilter } from './absent.js'
