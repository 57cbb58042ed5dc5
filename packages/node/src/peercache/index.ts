export { PeerCache, type PeerCacheInit, type PeerHit, type PeerMiss, type Trust } from './peercache.js'
export { CACHE_PROTOCOL, MAX_ANSWERS_PER_STREAM, SERVE_BUDGET_BYTES } from './constants.js'
