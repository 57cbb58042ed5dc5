export { Cache, type CacheInit, type CacheHit } from './cache.js'
export { blobPathFor } from './layout.js'
