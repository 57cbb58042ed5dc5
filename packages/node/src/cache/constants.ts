/** Cache limits and layout names, with why each has its value. */

/** Sub-directory of the cache dir holding content-addressed blob files. */
export const BLOB_DIR = 'blobs'
/** Where writers put partial files before renaming them into place (same filesystem). */
export const TMP_DIR = 'tmp'
/** Sub-directory holding the LevelDB index. */
export const INDEX_DIR = 'index'

/**
 * Access times are kept in memory and written in one batch this often: a LevelDB write per
 * `get` would put ~1,000 writes on the critical path of a build for a value only `gc` reads.
 */
export const ATIME_FLUSH_MS = 2_000

/** `gc` removes files in tmp/ older than this (a writer that died mid-write). */
export const STALE_TMP_MS = 60 * 60 * 1000

/**
 * `gc` removes blob files that no entry names once they are this old. Younger ones may belong
 * to a put in flight (the helper renames the blob into place before it sends its index entry,
 * in a `cache-index` batch).
 */
export const ORPHAN_GRACE_MS = 10 * 60 * 1000

/**
 * `gc` spares a blob whose file was written this recently: one just fetched from a peer, or
 * written by the helper, may be in cmd/go's hands before a build has pinned it.
 */
export const GC_SPARES_RECENT_MS = 10 * 60 * 1000

/**
 * Recall lists kept (one per command and directory that ran a build, docs/cache.md): the
 * newest this many. A list of `std` is 34 KB.
 */
export const MAX_RECALL_LISTS = 256

/**
 * How often the index is checked: whether writes go through again after one failed (a full
 * disk), and whether its directory is still there (a cache dir removed while the node runs).
 * A write (or a `stat`) every 10 s costs nothing; a daemon whose index took no writes would
 * otherwise lose every entry its builds put until it was restarted.
 */
export const INDEX_HEAL_MS = 10_000

/**
 * `heal` opens an index that still fails writes again only with this much free on its disk:
 * LevelDB writes what its log holds (up to a write buffer, 4 MiB) into a table and a new
 * manifest as it opens, and an open that fails leaves the node no index to read until it opens.
 */
export const INDEX_REOPEN_FREE_BYTES = 16 * 1024 * 1024

/** Entries `recall` looks up between two turns of the event loop (~20 ms of work). */
export const RECALL_SLICE = 1024

/** `--cache-max` trims the cache to this share of the limit, so a full cache is not trimmed on every put. */
export const TRIM_TO = 0.9

/**
 * A `--cache-max` trim that ended over the limit (what was left is held by running builds or
 * was written in the last GC_SPARES_RECENT_MS) is not run again for this long (trim.ts). Each
 * trim scans the whole index and stats every blob it spares: asked after every put, it kept a
 * node busy for the whole of a cold build (half a core, with 100k entries). A minute lets the
 * cache pass the limit by at most a minute's puts more than what no trim could take anyway.
 */
export const RETRIM_MS = 60_000
