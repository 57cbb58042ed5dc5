/** Scheduler limits and the cost model, with why each has its value. */

/**
 * Under `--offload busy`, a compile expected to take less than this stays local: the median std
 * compile (~29 ms, DESIGN §7) is shorter than shipping its inputs and archive to a peer and
 * back, so a tiny compile waits for a local slot instead.
 */
export const TINY_MS = 40

/**
 * Under `--offload busy`, a compile goes to a free peer even while a local slot is free when
 * its predicted wall time there (the peer's compile time over ours, times this compile's
 * expected time, plus the peer's usual overhead) is below this share of its expected time
 * here: the requester's own slot is slowed by everything else it runs (go, links, cgo, the
 * node), and an idle peer can be the faster place for a long compile.
 */
export const FASTER_PEER = 0.8

/**
 * Under `--offload busy`, a compile expected to take at least this long is a long pole: while
 * a local slot is free it still goes to a free peer unless that peer is predicted to be clearly
 * slower (1 / FASTER_PEER × its expected time here or more); a peer not yet timed is presumed as
 * fast as this host. The requester's own slot shares its CPU with go, links, cgo and the node:
 * in the lab its compiles took 66 % longer while it shipped work
 * (docs/benchmarks/remote-timeline.md), and a trip costs under a tenth of a compile this long.
 * A peer's record is learnt mostly from small compiles, where its start-up dominates, so it is
 * trusted here only to keep long poles off a clearly slower peer. A peer that turns out slow on
 * the pole itself is raced when overdue.
 */
export const LONG_POLE_MS = 1_000

/**
 * A long pole also stays here when moving its bytes over the link of the peer it would go to
 * would take more than this share of its expected time here (`peers-slower`). The trip is time
 * in which neither host compiles it, at the head of the critical path; the peer's compile ratio
 * and this host's expected time, learnt from small compiles, can both be off by half for a long
 * pole, but a link's time per byte is measured. In the lab a helper on 10 Mbit/s Wi-Fi was
 * predicted only 9 % slower for runtime (its 16 MB: 11 s on the link, against 18.6 s expected
 * here, where it took ~13 s), and took 22.7 s there.
 */
export const LONG_POLE_LINK_SHARE = 0.2

/**
 * With peers, cmd/go's -p is the local slots plus the peers' free slots plus this many more:
 * compiles that wait at the node (backlog.ts, the local queue), so a peer that finishes a task
 * finds the next one already there, and the node, not cmd/go, chooses which goes next. cmd/go
 * starts ready actions in its own order (depth first over the packages named), not by the
 * critical path: with only 3 beyond the slots, `net` in the lab took 8–12 s from its last import
 * to its compile, its cache check and C compiles waiting for go's slots while leaf packages of
 * crypto took them; 6 s with 12 (docs/benchmarks/remote-timeline.md). A waiting compile costs
 * the requester a sleeping shim.
 */
export const BACKLOG_DEPTH = 12

/**
 * The peers' share of cmd/go's -p is at most REMOTE_P_PER_CORE per core of this machine, and
 * REMOTE_P_MAX in all, whatever the adverts say (each peer's is already capped at
 * MAX_TASKS_PER_PEER, remote/constants.ts). -p bounds every action cmd/go runs here at once,
 * not only the compiles a peer may take: cgo, asm, pack and links, and the sleeping shims of the
 * compiles that wait. Every remote compile also costs this machine its inputs read and hashed,
 * shipped, and its archive checked and written, and in the lab a requester's own compiles took
 * 66 % longer while it shipped work (docs/benchmarks/remote-timeline.md): a core keeps a few
 * peers' slots fed, not hundreds. An advert of {1024, 1024} slots made `go build -p 1037`.
 */
export const REMOTE_P_PER_CORE = 8
export const REMOTE_P_MAX = 64

/**
 * A compile waiting in the backlog goes to a peer at most this many times when the peer
 * refuses it as busy (a slot that looked free and was not); then it waits for its local slot
 * alone. Each try reads and hashes its inputs again: a peer that advertises slots it refuses
 * must not draw one compile into a loop.
 */
export const BACKLOG_TRIES = 3

/**
 * A long pole that finds every peer busy waits this share of its expected time (at most
 * LONG_POLE_WAIT_MAX_MS) for a peer alone before it queues for the local slot as well, at the
 * head of that queue: a peer's current task usually ends within a few hundred ms, and on a
 * requester that is also running go, cgo and the node a long pole's compile took 1.2–1.8 × as
 * long as on an idle peer (docs/benchmarks/remote-timeline.md). The local slot serves other
 * compiles meanwhile. The cap bounds the cost of a size estimate far off the mark (a package
 * of embedded data) or of peers all busy with long work.
 */
export const LONG_POLE_WAIT = 0.2
export const LONG_POLE_WAIT_MAX_MS = 2_000

/**
 * Cost of a compile nobody has timed yet: a fixed part plus one per byte of Go source
 * (GoFiles + CgoFiles). A least-squares fit of go1.26 compile times of the standard library on
 * this project's 2-core machine against source size gave ~8 ms of start-up and ~1 KB of source
 * per ms (runtime: 2.7 MB, ~3 s). It only ranks packages and spots tiny ones until the history
 * has real times.
 */
export const COST_BASE_MS = 8
export const COST_BYTES_PER_MS = 1_000

/**
 * The size model is scaled by this machine's own compile times (scheduler.ts `scale`): sums
 * decay by SCALE_DECAY per sample (the last ~20 compiles count most), clamped to a sane range.
 */
export const SCALE_DECAY = 0.95
export const SCALE_MIN = 0.25
export const SCALE_MAX = 20

/** Weight of a new sample in a package's duration history (exponential moving average). */
export const HISTORY_ALPHA = 0.5
/** Packages remembered; the least recently compiled are forgotten first. */
export const HISTORY_MAX = 20_000
/** `<cache>/history.json`: compile durations per import path. */
export const HISTORY_FILE = 'history.json'

/**
 * A remote task is overdue past OVERDUE_FACTOR × (expected compile + expected transfer) +
 * OVERDUE_MARGIN_MS. Then it is raced: by a local copy (which waits for a local slot, in
 * priority order) and by a second peer if one is free. Equal hosts finish well inside 2×; the
 * margin covers a new connection and a cold page cache on the peer.
 */
export const OVERDUE_FACTOR = 2
export const OVERDUE_MARGIN_MS = 500
/** Transfer estimate for the overdue time: ~50 MB/s, half of a 1 Gbit link. */
export const TRANSFER_BYTES_PER_MS = 50_000

/**
 * A remote attempt's deadline (remote/constants.ts REMOTE_BASE_MS: 30 s and 2 s per MB of
 * inputs) is never before this many times its overdue time, with its expected archive's
 * transfer counted too. A compile expected to take 15 s is overdue after ~30.5 s: the fixed
 * deadline killed it first, the honest peer took a failure and a 30 s penalty, and the compile
 * began again here from nothing, with no race. Twice leaves a raced task time to finish
 * while the local copy runs (about one more expected time); small tasks keep the fixed deadline.
 */
export const DEADLINE_OVER_RACE = 2

/**
 * With peers that can take compiles, the compiles a requester runs itself run at this nice
 * level: below cmd/go's own steps (its cache checks, asm, pack, cgo, the build IDs) and the
 * node's event loop, which the critical path's compiles on peers wait on here, and which a
 * local compile would otherwise share the CPU with as an equal. Without peers, a local compile
 * is all there is to do: it runs at go's own priority, as under plain `go build`.
 */
export const LOCAL_NICE = 5
