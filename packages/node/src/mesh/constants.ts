/** Mesh timings and limits, with why each has its value. */

/** The port a daemon listens on by default (all interfaces): documented in README and docs/mesh.md. */
export const DEFAULT_PORT = 4770

/**
 * Yamux's largest receive window per stream (js-yamux's own default, set here so the read
 * buffer below cannot drift from it). A stream grows its window to it when it is read quickly.
 * A paused stream (remote/metered.ts) holds at most one window of what its peer sends, so its
 * read buffer is allowed one window: js-yamux's 4 MiB would end a paused stream whose honest
 * sender had a larger window in flight.
 */
export const STREAM_WINDOW_BYTES = 16 * 1024 * 1024

/** Gossip topic carrying adverts. Versioned: a new advert format gets a new topic. */
export const ADVERT_TOPIC = 'grid/adverts/1'

/** Direct request/response: ask a newly connected peer for its advert instead of waiting for gossip. */
export const ADVERT_PROTOCOL = '/grid/advert/1.0.0'

/**
 * Adverts are re-sent this often even when nothing changed; it bounds how stale a peer's
 * slots and load can be. An advert is ~470 bytes, but gossipsub forwards each one to every
 * mesh peer: measured at rest (docs/benchmarks/mesh.md), all mesh traffic together was
 * ~280 KiB/min per node with 4 nodes and ~1 MiB/min with 8.
 */
export const HEARTBEAT_MS = 5_000

/**
 * A change worth telling at once (a new connection, a new toolchain) is advertised after this,
 * coalescing a burst of such changes into one advert.
 */
export const ADVERT_SOON_MS = 100

/**
 * A change of free slots is advertised after this. Slots change with every compile (up to
 * ~10 times a second per node in a build), and every advert is signed, verified by each
 * member and forwarded by gossip: advertising each change cost a saturated requester a tenth
 * of its node's time in the lab. A requester does not need them for its own tasks (it counts
 * what it has in flight on each peer); they show other requesters' load, and a refusal as
 * busy covers the lag.
 */
export const ADVERT_SLOTS_MS = 1_000

/** Round-trip times are measured every this many heartbeats (each ping opens a stream). */
export const PING_EVERY_BEATS = 3

/**
 * A peer whose adverts stop for this long is dropped from the peer table: four missed
 * heartbeats, so one lost gossip round never drops a live peer.
 */
export const PEER_TIMEOUT_MS = 20_000

/** Redial backoff for known peers and bootstrap addresses: 1 s doubling to 30 s. */
export const REDIAL_MIN_MS = 1_000
export const REDIAL_MAX_MS = 30_000

/**
 * A peer that left the table (adverts stopped) is still redialled, with backoff, for this long
 * after it was last seen: a workstation that rebooted or lost its cable rejoins by itself even
 * when nobody lists it as a bootstrap address.
 */
export const REJOIN_WINDOW_MS = 10 * 60_000

/**
 * Members in the peer table at most. Office meshes are a few dozen nodes and a node keeps at most
 * MAX_CONNECTIONS connections, so a larger table could not be used; the bound stops a flood of
 * adverts from growing it (each entry holds an advert of up to 16 KiB).
 */
export const MAX_PEERS = 256

/**
 * Members known only from an advert that gossip relayed: signed by a PeerId this node has no
 * connection to, and that neither mDNS nor a bootstrap address vouches for. They are how a node
 * learns of the far side of the mesh (a member that bootstrapped from another one), but any member
 * can sign adverts with fresh keys naming any addresses, so at most this many are listed and
 * dialled at a time; newer ones are dropped until one connects or ages out (PEER_TIMEOUT_MS
 * without an advert), and none is written to peers.json before a connection to it succeeded.
 * 64 covers an office mesh (a few dozen nodes) in which every node knows just one other.
 */
export const MAX_ADVERT_ONLY_PEERS = 64

/**
 * Members this node has been connected to that it remembers (for redials after a restart, in
 * peers.json), the least recently seen forgotten first: four times MAX_ADVERT_ONLY_PEERS for an
 * office that changes over months; at 16 addresses each the file stays under ~300 KB.
 */
export const MAX_KNOWN_PEERS = 256

/**
 * Dials to members and bootstrap addresses start at most this many addresses a second in total
 * (each address is a TCP connection attempt), after a burst of DIAL_BURST. Whoever signs an advert
 * chooses its addresses: without a rate, a member flooding forged adverts made every node send
 * ~85 connection attempts a second at hosts of its choosing. 4 a second still reaches a few
 * dozen remembered members within seconds of a restart (most advertise one to three addresses),
 * and they dial back too.
 */
export const DIAL_ADDRS_PER_SECOND = 4
export const DIAL_BURST = 8

/** A peer that failed the handshake (not a member) is retried this rarely. */
export const NOT_MEMBER_RETRY_MS = 5 * 60_000

/**
 * A refused handshake (GRID_ERR_NOT_MEMBER) is logged the first time per address, then told as a
 * count at most once per REFUSED_LOG_INTERVAL_MS: a host without the key that reconnects at
 * libp2p's per-IP limit (INBOUND_CONNECTIONS_PER_SECOND) wrote 100 lines a second, and rotated the
 * log (LOG_ROTATE_BYTES) away within minutes. At most REFUSED_LOG_ADDRESSES addresses are
 * remembered (whoever connects chooses them); beyond, their refusals are counted together.
 */
export const REFUSED_LOG_INTERVAL_MS = 60_000
export const REFUSED_LOG_ADDRESSES = 256

/** Dial and ping deadlines: on a LAN anything slower is as good as down. */
export const DIAL_TIMEOUT_MS = 5_000
export const PING_TIMEOUT_MS = 2_000

/**
 * Liveness (liveness.ts): a connection that has brought no byte for LIVENESS_QUIET_MS is pinged,
 * looked for every LIVENESS_CHECK_MS, and ended when LIVENESS_PING_TIMEOUT_MS pass with no answer
 * and no byte in their second half. A vanished peer is found 10–15 s after its last byte, as
 * libp2p's monitor found it (a ping every 10 s, 5 s to answer); a peer still sending never is.
 */
export const LIVENESS_QUIET_MS = 5_000
export const LIVENESS_CHECK_MS = 5_000
export const LIVENESS_PING_TIMEOUT_MS = 5_000

/**
 * When mDNS finds a peer, the smaller PeerId dials (both sides dialling at once gives two
 * connections); the larger one dials only if still unconnected after this grace period.
 */
export const DIAL_GRACE_MS = 3_000

/**
 * Over this 1-minute load average per core (less its compiles for peers: load.ts), an `idle`
 * node stops taking remote work.
 */
export const IDLE_LOAD_PER_CORE = 0.5

/** How often, and over what window, the kernel averages its load (LOAD_FREQ, EXP_1): load.ts does the same. */
export const LOAD_SAMPLE_MS = 5_000
export const LOAD_WINDOW_MS = 60_000

/** mDNS query interval: discovery latency on a LAN versus multicast chatter. */
export const MDNS_INTERVAL_MS = 5_000

/** Office meshes are a few dozen peers, often behind one address (one NAT): raise libp2p's per-IP limits. */
export const INBOUND_CONNECTIONS_PER_SECOND = 100
export const MAX_CONNECTIONS = 256
