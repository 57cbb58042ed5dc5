export { PeerCache, type PeerCacheInit, type PeerHit, type PeerMiss, type Trust } from './peercache.js'
export { CACHE_PROTOCOL, FETCH_BUDGET_BYTES, LOOKUP_TIMEOUT_MS, MAX_ANSWERS_PER_STREAM, SERVE_BUDGET_BYTES, STREAM_BUFFER_BYTES } from './constants.js'
