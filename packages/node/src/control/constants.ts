/** Control-socket timings. */

/** How long a client waits to connect: the socket is local, so anything slower is not a node. */
export const CONNECT_TIMEOUT_MS = 1_000

/** Default deadline of a control request with no signal of its own (gc and verify scan all). */
export const REQUEST_TIMEOUT_MS = 10 * 60 * 1000

/**
 * Default deadline of the requests a well node answers in milliseconds (status, peers, stop,
 * opening and closing a build): one that takes this long is hung, or so is its machine, and
 * `grid build` goes on without it rather than wait. A test of a hung node may shorten it with
 * GRID_TEST_ANSWER_MS (client.ts).
 */
export const ANSWER_TIMEOUT_MS = 15_000

/**
 * A connection that has sent part of a frame and nothing more for this long is closed: clients
 * write each frame whole, so a stalled half frame is a client that hung or misbehaves, and its
 * bytes are held until then.
 */
export const PARTIAL_FRAME_MS = 30_000

/**
 * Bytes of unfinished frames the node holds for all its connections together. The connection
 * whose bytes would pass it is closed: each may announce a frame of up to MAX_FRAME_BYTES, and
 * many of them at once must not take the node's memory. Requests are small (the largest, a
 * build's package graph, a few MB).
 */
export const MAX_PENDING_FRAME_BYTES = 256 * 1024 * 1024
