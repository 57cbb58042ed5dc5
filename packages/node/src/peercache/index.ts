export { PeerCache, type PeerCacheInit, type PeerHit, type PeerMiss, type Trust } from './peercache.js'
export { CACHE_PROTOCOL } from './constants.js'
