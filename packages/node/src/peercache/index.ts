export { PeerCache, type PeerCacheInit, type PeerHit, type PeerMiss, type Trust } from './peercache.js'
export { CACHE_PROTOCOL, FETCH_BUDGET_BYTES, MAX_ANSWERS_PER_STREAM, SERVE_BUDGET_BYTES } from './constants.js'
