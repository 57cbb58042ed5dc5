/** Control-socket timings. */

/** How long a client waits to connect: the socket is local, so anything slower is not a node. */
export const CONNECT_TIMEOUT_MS = 1_000

/** Default deadline of a control request with no signal of its own (gc and verify scan all). */
export const REQUEST_TIMEOUT_MS = 10 * 60 * 1000

/**
 * Default deadline of the requests a well node answers in milliseconds (status, peers, stop,
 * opening and closing a build): one that takes this long is hung, or so is its machine, and
 * `grid build` goes on without it rather than wait.
 */
export const ANSWER_TIMEOUT_MS = 15_000
