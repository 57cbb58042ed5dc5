/** Shared-cache protocol name, deadlines and limits, with why each has its value. */

export const CACHE_PROTOCOL = '/grid/cache/1.0.0'

/**
 * A lookup sits on an action's critical path: cmd/go waits for the answer. On a LAN a round
 * trip is ~0.1–1 ms; a peer slower than this is treated as not having the entry.
 */
export const LOOKUP_TIMEOUT_MS = 250

/** Gets arriving within this window go to each peer as one batched lookup. */
export const BATCH_WINDOW_MS = 1

/** Fetch deadline: a base plus the size at a pessimistic 20 MB/s. */
export const FETCH_BASE_MS = 3_000
export const FETCH_MIN_BYTES_PER_MS = 20_000

/**
 * On a link timed slower than that (peercache.ts `slowerToFetch` let the body through: compiling
 * it would take longer still), the deadline is this many times the body's bytes at the timed
 * speed, plus the base: room for the other bodies on their way over the same link.
 */
export const FETCH_LINK_MARGIN = 3

/** Our side opens one stream per peer; allow a few inbound ones per connection (restarts, races). */
export const MAX_INBOUND_STREAMS = 16

/**
 * Requests of one inbound stream answered at once; the next is read when one is done. A fetch
 * holds its whole body in memory while it is sent, so this bounds what one stream can cost
 * (a member that asks for many bodies and reads slowly holds this many here, no more). Eight
 * keeps the stream busy for a member's parallel gets (lookups are batched, so a burst of gets
 * is one message) and a lookup rarely waits behind whole fetches.
 */
export const MAX_ANSWERS_PER_STREAM = 8
