/** Control-socket timings. */

/** How long a client waits to connect: the socket is local, so anything slower is not a node. */
export const CONNECT_TIMEOUT_MS = 1_000

/** Default deadline of a control request with no signal of its own (gc and verify scan all). */
export const REQUEST_TIMEOUT_MS = 10 * 60 * 1000
