/** Remote compile protocol name, limits and deadlines. */

/**
 * 1.1.0: eager offers. 1.2.0: a task may carry `-dwarf=…` and `-d=libfuzzer` (TASK_VALUE_FLAGS,
 * TASK_DEBUG_FLAGS), which a 1.1.0 worker refuses as flags it does not allow: the requester would
 * take that for the worker's failure and set it aside, where a member of another version must
 * only get no tasks (docs/mesh.md).
 */
export const COMPILE_PROTOCOL = '/grid/compile/1.2.0'

/** A message on the compile stream: the biggest is a result with a package archive (std's biggest ~13 MB; cmd's ~40 MB). */
export const MAX_COMPILE_MESSAGE_BYTES = 96 * 1024 * 1024

/**
 * A worker's compile messages being read or handled at once, from every stream of every peer
 * (metered.ts): without it one member's 64 streams could each make it buffer a message of the
 * largest size. A requester's messages are its offers (KBs) and its inputs in batches of
 * BLOB_BATCH_BYTES, so honest traffic never waits on it; one message over it is read alone.
 */
export const WORKER_READ_BUDGET_BYTES = 256 * 1024 * 1024
/**
 * What one peer's compile messages may hold of WORKER_READ_BUDGET_BYTES: a member that starts
 * messages of the largest size and sends them slowly holds them until its stream's deadline,
 * and the others' tasks must not wait behind it meanwhile.
 */
export const WORKER_READ_SHARE_BYTES = 128 * 1024 * 1024

/**
 * A worker's inputs that came packed (from a requester on a slow link, ../pack.ts), unpacked at
 * once from every peer: each `blobs` message's packed inputs are unpacked beside its packed
 * bytes (which WORKER_READ_BUDGET_BYTES holds) until they are stored, into the sizes the task
 * declares, up to MAX_TASK_INPUT_BYTES (256 MiB) for a message of a few KB of packed zeros:
 * a member's 64 streams could make it hold that much each. Its own budget, not the read budget: a
 * message waits for this room holding its bytes there, and waiters that held their messages in
 * the one budget could fill it and wait on each other for good. A requester sends its inputs in
 * batches it closes once they reach BLOB_BATCH_BYTES (4 MiB) unpacked, so one message of its
 * packed inputs declares less than that plus one input of the largest size (MAX_TASK_FILE_BYTES,
 * 64 MiB): this fits it with room for another peer's batches; a message that declares more than
 * this is refused, as no honest one does. Packed inputs come only over links slower than
 * ~16 MB/s, and unpack at ~250 MB/s: an honest batch holds its room for ~20 ms.
 */
export const WORKER_UNPACK_BUDGET_BYTES = 128 * 1024 * 1024
/**
 * What one peer's unpacked inputs may hold of WORKER_UNPACK_BUDGET_BYTES, so that a member
 * sending packed inputs on many streams leaves room for the others' tasks. A message that
 * declares more than this (at most BLOB_BATCH_BYTES beyond it from an honest requester) is
 * unpacked alone among its peer's (ByteBudget).
 */
export const WORKER_UNPACK_SHARE_BYTES = 64 * 1024 * 1024

/**
 * A requester's compile messages being read or held at once, from every stream to every peer
 * (metered.ts): each stream used to buffer up to twice the largest message of whatever its
 * worker sent, asked or not. A worker's answers are `need` and `fail` (KBs) and results, whose
 * archives are up to tens of MB (std's biggest ~13 MB, cmd's ~40 MB), held until the attempt
 * has checked and handed them on; several of those at once still fit, so honest builds do not
 * wait on it.
 */
export const REQUESTER_READ_BUDGET_BYTES = 256 * 1024 * 1024
/**
 * What one peer's answers may hold of REQUESTER_READ_BUDGET_BYTES: a worker that starts results
 * of the largest size and sends them slowly holds them until the attempt's deadline, and the
 * results of other peers must not wait behind it meanwhile.
 */
export const REQUESTER_READ_SHARE_BYTES = 128 * 1024 * 1024

/**
 * Archives that came packed (over a slow link, ../pack.ts), unpacked at once on a requester, from
 * every peer: each is unpacked beside its packed bytes (which REQUESTER_READ_BUDGET_BYTES holds)
 * and held until its attempt has checked it and handed it on, so a worker whose small packed
 * bodies unpack large would otherwise make it hold up to the message cap per task, tens of its
 * tasks at once. Its own budget, not the read budget: an answer waits for this holding its
 * message, and waiters that held their messages in the one budget could fill it and wait on
 * each other for good. The biggest archives are ~40 MB (cmd's); packed ones come only over
 * links slower than ~16 MB/s and unpack at ~250 MB/s, so an honest build seldom has two at once,
 * and three of the biggest fit.
 */
export const REQUESTER_UNPACK_BUDGET_BYTES = 128 * 1024 * 1024
/**
 * What one peer's archives may hold of REQUESTER_UNPACK_BUDGET_BYTES, so that one declaring
 * large archives leaves room for the others. An archive larger than this is unpacked alone
 * (ByteBudget), as is one from a worker of an earlier version, which does not declare its size:
 * room for the largest message a result may be (MAX_COMPILE_MESSAGE_BYTES) is taken for it.
 */
export const REQUESTER_UNPACK_SHARE_BYTES = 64 * 1024 * 1024

/** Blobs sent per message while answering a worker's `need`. */
export const BLOB_BATCH_BYTES = 4 * 1024 * 1024

/**
 * A task whose inputs not yet known to be at the peer come to at most this many bytes sends them
 * with its offer (`eager`), saving the round trip of `need`; a bigger one asks first. A guess that
 * is wrong costs at most these bytes, or the round trip it meant to save.
 */
export const EAGER_INPUT_BYTES = 1024 * 1024

/** Input hashes remembered per peer as held there (then forgotten and learnt again). */
export const MAX_KNOWN_INPUTS = 100_000

/**
 * Deadline of a remote compile: a base for the round trips and transfers plus a generous
 * multiple of a slow compile (cmd/compile/internal/ssa takes ~10 s on a fast core), per MB of
 * its inputs. Past it the compile runs locally: cmd/go itself never times out, so grid must. The
 * scheduler may ask for a later one (never before a multiple of the time it races a late task,
 * scheduler/constants.ts DEADLINE_OVER_RACE), up to WORKER_TASK_TIMEOUT_MS beyond this one:
 * a compile expected to take 15 s would otherwise be killed here before any race began.
 */
export const REMOTE_BASE_MS = 30_000
export const REMOTE_PER_INPUT_MB_MS = 2_000

/**
 * A peer found to be of another grid version by trying (it did not speak COMPILE_PROTOCOL, or
 * refused a task as GRID_ERR_TASK_INCOMPATIBLE) gets no task for this long while it advertises
 * the same grid version. A node registers its compile protocol a moment after it joins the mesh,
 * so a dial that found no COMPILE_PROTOCOL is not taken as final: identify listing it later ends
 * the wait. A refusal of the task's shape comes from a worker that lists the protocol all along,
 * so only another advertised version or this expiry ends that one. An offer every five minutes to
 * a member of another version costs one round trip.
 */
export const INCOMPATIBLE_RETRY_MS = 5 * 60_000

/** Worker-side: how long a task may run before it is killed. */
export const WORKER_TASK_TIMEOUT_MS = 10 * 60_000

/**
 * A result's `compileMs` above this is refused as malformed: the worker kills a task after
 * WORKER_TASK_TIMEOUT_MS (its compile time includes waiting for a slot, within that deadline);
 * twice that leaves room for a slow kill. The requester also never believes a compile took
 * longer than its own wall time for the task (remote.ts).
 */
export const MAX_REPORTED_COMPILE_MS = 2 * WORKER_TASK_TIMEOUT_MS

/**
 * One task's sample of a peer's ratio (its compile time over our expected time, remote.ts) is
 * taken within these bounds (its speed's, wall time over expected, within 0.1 and MAX_RATIO):
 * one wild sample cannot dominate the moving average. The floor is what a peer can reach by its
 * word alone: its compile time is its own figure, capped only by the wall time we measure, and
 * one that said 0 ms drove its ratio to 0, predicted to take any compile in its fixed cost.
 * About 8× is the widest honest gap seen: a requester on a 0.5-core lab host (~5× the size
 * model, scheduler.ts `scale`) that is busy shipping work (its compiles 1.2–1.8× as long,
 * docs/benchmarks/remote-timeline.md) against an idle full-core peer. A sample below says more
 * about our estimate (a size estimate far off: a package of data) or the peer's word than about
 * its CPU; a liar gains no more than being taken for 8× faster, and its real time still shows
 * in its wall time and in races. The ceiling is reached only by our own clock; any ratio over
 * 1 / FASTER_PEER (scheduler/constants.ts) already counts as clearly slower.
 */
export const MIN_RATIO = 1 / 8
export const MAX_RATIO = 20

/** A worker's files: `<cache>/worker/`, its input store in `blobs/` there (inputs.ts). */
export const WORKER_DIR = 'worker'
export const INPUTS_DIR = 'blobs'

/** A worker's inputs unused this long leave its store (inputs.ts), swept this often. */
export const WORKER_INPUT_TTL_MS = 3 * 86_400_000
export const WORKER_SWEEP_MS = 3_600_000

/**
 * Directories one worker sandbox may gather before it is removed and a fresh one made
 * (sandbox.ts). A sandbox keeps the directories of its tasks' inputs for the next task; the
 * sources' directories (GOROOT, modules) and the cache's shards recur, but each build on a
 * requester has a $WORK of its own, and every task brings its `$WORK/bNNN`: without a bound a
 * helper gathered a few of those per build for as long as it ran, on disk and in memory (in
 * loopback soaks of the fixture module, about four directories per task). Removing one past
 * this costs the next task a few mkdirs, once in thousands of directories.
 */
export const MAX_SANDBOX_DIRS = 4096

/** Worker process priority for remote tasks: below the workstation owner's own work. */
export const WORKER_NICE = 10

/**
 * A worker refuses peers' tasks while the disk of its dir has less free than this: a task may
 * bring up to MAX_TASK_INPUT_BYTES (256 MiB) of inputs, and one the disk cannot take fails once
 * its inputs have moved, or fails its compile (which its requester, compiling it cleanly,
 * takes for a lie). What room is left is its owner's.
 */
export const WORKER_MIN_FREE_BYTES = 256 * 1024 * 1024

/** How long a worker goes by its last look at its disk's free space (else a statfs per offer). */
export const WORKER_ROOM_CHECK_MS = 5_000

/** A worker whose disk stays full says so in its log at most this often. */
export const WORKER_FULL_WARN_MS = 10 * 60_000

export const DISK_FULL = 'this node\'s disk is full: it takes no remote work until it has room'

/** A worker ends a compile stream after this long without an offer on it. */
export const STREAM_IDLE_MS = 30_000

/**
 * A worker's answer must be taken by its requester within RESULT_SEND_BASE_MS plus its size at
 * RESULT_SEND_BYTES_PER_MS (1 MB/s: a 40 MB archive over a poor Wi-Fi link has ~70 s), and a
 * stream's last bytes within RESULT_SEND_BASE_MS of its close. Past that the stream is reset:
 * a requester that keeps its stream open and reads nothing (a paused stream grants no window)
 * held the result's bytes in the worker, and the stream, for as long as their connection lived.
 * An honest requester reads at once, or gives up and resets the stream itself at its own
 * deadline (remote.ts); its reads may wait for its read budget, which honest builds do not fill.
 */
export const RESULT_SEND_BASE_MS = 30_000
export const RESULT_SEND_BYTES_PER_MS = 1_000

/** Streams a requester keeps open to one peer between tasks (more are closed). */
export const MAX_IDLE_STREAMS = 4

/**
 * A worker's refusal when its slots are full: `fail` with code GRID_ERR_TASK_REFUSED and exactly
 * this message, as its answer to the offer (or, for a task admitted only to join a running
 * compile, after a `need` of its importcfg and embedcfg alone: worker.ts). The requester tries
 * another peer, no penalty; the same text anywhere else is a failure like any other.
 */
export const BUSY = 'all compile slots are busy'

/**
 * Our tasks at once on one peer, whatever its advert says. Each holds a compile stream, and
 * libp2p allows 64 outbound streams per protocol on a connection by default (the worker, like
 * every node, registers the protocol with that default), as the worker takes 64 inbound
 * (worker.ts): the 65th failed here as "Too many outbound protocol streams" with an advert of
 * 1024 slots. Half of it leaves room for the streams kept between tasks (MAX_IDLE_STREAMS) and
 * for streams being reset, which count until the reset is processed. A host with more slots
 * than this serves more requesters, not more of one's tasks.
 */
export const MAX_TASKS_PER_PEER = 32

/** A peer's link is measured on this protocol (link.ts). */
export const LINK_PROTOCOL = '/grid/link/1.0.0'

/**
 * A link probe's big frames: each long enough to get past a shaper's burst (tc's tbf lets
 * 256 KB through at line rate) and to take ~0.8 s on 10 Mbit/s Wi-Fi, a few ms on a gigabit
 * LAN. A probe is one round trip of a few bytes, then LINK_PROBE_ROUNDS − 1 of these.
 */
export const LINK_PROBE_BYTES = 1024 * 1024
export const LINK_PROBE_ROUNDS = 3
/**
 * A big frame that took longer than this (a link under ~5 MB/s) is the probe's last: the faster
 * of two is for fast links, where the first still ramps up (TCP, yamux's window), and on a slow
 * one a second frame would cost the link its time again (0.8 s on 10 Mbit/s Wi-Fi, per peer, at
 * every build half an hour apart) for little accuracy.
 */
export const LINK_PROBE_ONE_ROUND_MS = 200
/** A probe ends after this long; one cut short says its link is at least that slow. */
export const LINK_PROBE_TIMEOUT_MS = 4_000
/** A peer answers one probe from each peer at most this often. */
export const LINK_PROBE_MIN_GAP_MS = 10_000
/**
 * A requester measures again a link it last timed (by a probe or a big task) longer ago than
 * this, at its next build: links change while a member stays (a Wi-Fi that fills up). A member
 * that moves (a laptop from its desk to Wi-Fi) usually leaves the mesh and comes back, and is
 * measured again then. Each probe is 2 MiB from the requester: in an office of 50 members, one
 * that builds all day sends 100 MiB per this period.
 */
export const LINK_STALE_MS = 30 * 60_000

/**
 * Bytes a compile is presumed to move (inputs out, archive back) per ms of its expected time
 * before any task of ours has shown it, where the compile's own bytes are not at hand: placing
 * a compile while the local slot is free, and ranking peers that no task of ours has timed by
 * their probed link (a long pole is judged by its own bytes: task-builder.ts `taskBytes`). Low
 * on purpose: in the lab (0.5-core hosts) std's remote tasks moved ~3 KB per expected ms,
 * runtime ~1.3 KB; on a full core compiles take a quarter of the time for the same bytes.
 */
export const LINK_PRIOR_BYTES_PER_MS = 1_000

/**
 * A package archive's size per byte of its Go sources, to guess what a long pole moves before it
 * has run anywhere (remote.ts `taskBytes`): go1.26's std built from an empty cache gave 4.9 over
 * its ten packages of more than 300 KB of source (runtime: 2.7 MB of source, a 13.4 MB archive),
 * 9.0 over all 356, and 0.3–13 per package (tables of data are the smallest: time/tzdata).
 */
export const ARCHIVE_BYTES_PER_SOURCE_BYTE = 5
