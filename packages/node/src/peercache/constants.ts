/** Shared-cache protocol name, deadlines and limits, with why each has its value. */
import { MAX_PEER_MESSAGE_BYTES } from '@grid/protocol'

export const CACHE_PROTOCOL = '/grid/cache/1.0.0'

/**
 * A lookup sits on an action's critical path: cmd/go waits for the answer. On a LAN a round
 * trip is ~0.1–1 ms; a peer slower than this is treated as not having the entry.
 */
export const LOOKUP_TIMEOUT_MS = 250

/** Gets arriving within this window go to each peer as one batched lookup. */
export const BATCH_WINDOW_MS = 1

/**
 * Fetch deadline: a base plus the size at a pessimistic 20 MB/s (a wait for FETCH_BUDGET_BYTES has
 * as long again). A fetch also keeps to its pace: its first bytes within the base, the rest at
 * that rate (peercache.ts `fetch`).
 */
export const FETCH_BASE_MS = 3_000
export const FETCH_MIN_BYTES_PER_MS = 20_000

/**
 * On a link timed slower than that (peercache.ts `slowerToFetch` let the body through: compiling
 * it would take longer still), the deadline is this many times the body's bytes at the timed
 * speed, plus the base: room for the other bodies on their way over the same link.
 */
export const FETCH_LINK_MARGIN = 3

/**
 * Bytes a cache stream may have received and not yet read, on either side (its lpStream's
 * buffer; past it the stream is reset): four of the largest messages (MAX_PEER_MESSAGE_BYTES).
 * The asking side reads each reply as it comes; a server reads the next request once one of its
 * MAX_ANSWERS_PER_STREAM is answered, and requests are small (a lookup of 256 keys ~9 KB, a
 * fetch ~50 bytes). Only a peer that sends faster than this node decodes, or sends what no one
 * asked for, comes near it.
 */
export const STREAM_BUFFER_BYTES = 4 * MAX_PEER_MESSAGE_BYTES

/** Our side opens one stream per peer; allow a few inbound ones per connection (restarts, races). */
export const MAX_INBOUND_STREAMS = 16

/**
 * Requests of one inbound stream answered at once; the next is read when one is done. It bounds
 * what one stream has read and not yet answered (a request waiting for SERVE_BUDGET_BYTES holds
 * its place here), so a member cannot queue requests without end. Eight keeps the stream busy
 * for a member's parallel gets (lookups are batched, so a burst of gets is one message) and a
 * lookup rarely waits behind whole fetches. Memory is bounded node-wide by SERVE_BUDGET_BYTES,
 * not by this: a member may open MAX_INBOUND_STREAMS streams per connection, and several
 * connections.
 */
export const MAX_ANSWERS_PER_STREAM = 8

/**
 * Bytes of bodies a node holds at once to serve them, whatever the number of streams and
 * connections asking (peercache.ts `answer`). A fetch reads its whole body into memory (twice
 * its size when it goes packed) and holds it until its last chunk is written; one that would go
 * over waits its turn, in order; one larger than this is served alone. Bodies inlined in a
 * lookup reply count too, but never wait (nor hold up a lookup behind a big body): with no room
 * they are left out, and fetched. Cached
 * `go test`/`go run` executables are tens of MB, a package archive ~0.5 MB: 256 MiB lets a few
 * executables or hundreds of archives go out at once, far more than a gigabit link carries in
 * the time one is read from disk, on a workstation that needs its memory for compiles.
 */
export const SERVE_BUDGET_BYTES = 256 * 1024 * 1024

/**
 * A reply (a chunk of at most CHUNK_BYTES, or a lookup's answer) must be taken by the member
 * within this long, else its stream is reset and the bodies it held of the serve budget given
 * back. A member reads its stream at once (channel.ts) at the link's pace, where a chunk takes
 * well under a second even on a poor Wi-Fi link; one that kept its stream open and read nothing
 * (a paused stream grants no window) held its bodies of the budget for as long as the
 * connection lived, and MAX_ANSWERS_PER_STREAM of them per stream could hold all of it.
 */
export const SERVE_WRITE_MS = 30_000

/**
 * Bytes of bodies a node fetches at once, from every peer (peercache.ts `find`): a body's chunks
 * are gathered in memory up to the claim's size before they are hashed and stored (twice that
 * when it comes packed), so the gets of several builds at once, each up to MAX_BODY_BYTES, are
 * bounded by this. A fetch that would go over waits its turn, in order, for as long as its own
 * deadline allows, then is a miss (cmd/go compiles); one larger than this is fetched alone. Same
 * size as SERVE_BUDGET_BYTES, for the same reasons.
 */
export const FETCH_BUDGET_BYTES = 256 * 1024 * 1024
