/**
 * The node's content-addressed cache: cmd/go's ActionID → OutputID map in LevelDB, bodies as
 * blob files named by their sha256.
 *
 * Invariants (docs/cache.md explains each):
 *  1. A blob file's name is the sha256 of its bytes. Writers create it in `blobs/tmp/`, check
 *     the hash, and rename it into place, so a blob path never holds a partial file; two
 *     writers of the same blob race harmlessly (both write the same bytes).
 *  2. An index entry is written only after its blob is in place with the recorded size. An
 *     entry never names a blob that was not hashed by the writer that put it.
 *  3. Each entry records the stamp (inode, ctime) of the blob file as it was when checked.
 *     A `get` whose blob no longer has that stamp (the file was replaced or written to since)
 *     re-hashes it before serving; a blob that fails the hash is deleted with its entry and the
 *     lookup is a miss. A blob that cannot be read (EMFILE, EACCES, EIO) is a miss and stays,
 *     entry and all: a failed read says nothing of its bytes. Only a hash that does not match
 *     deletes a blob. `verify` re-hashes every blob regardless of stamps.
 *  4. Only this process opens the LevelDB (LevelDB locks it); every other process asks the
 *     node over its socket. Blob files may be read by anyone holding a DiskPath.
 *  5. Each entry records the PeerId of the node that produced it. An own entry whose compile
 *     ran on a peer's worker also records that worker's PeerId (`w`): this node checked the
 *     archive's shape and vouches for it, but the code in it is the worker's. Entries put
 *     before this was recorded have no `w`, and stay valid.
 *  6. `gc` never removes a blob pinned by a running build, nor one whose file was written in
 *     the last GC_SPARES_RECENT_MS, and removes every entry that names a blob it removes (the
 *     blob first: on a full disk the entries stay, and a get drops them as it finds it gone). A blob is pinned in the same turn of the event loop as its hit or put is
 *     decided (`get`, `recall` and `put` take the build's pin set), and `gc` marks a blob as
 *     being removed in the same turn as it checks the pins, so a hit and a removal of one blob
 *     exclude each other. The helper hands cmd/go a blob it finds already in place at a put
 *     only once the node has indexed (and pinned) it; otherwise (and at once for a small
 *     body) it writes a private copy.
 *  7. Recall lists (which ActionIDs a command looked up last time) are hints only: a recalled
 *     entry is served by the helper only if its blob still has the entry's size and stamp (3);
 *     anything else is asked of the node. Entries recalled for a build are pinned by it (6).
 *  8. The absent filter holds every ActionID in the index (and maybe others): a key is added
 *     to it before its entry is written, and bits are never cleared (absent.ts).
 *
 * The index heals (`heal`): after a write fails (a full disk), or once its directory has gone
 * (removed by hand), it is checked every INDEX_HEAL_MS and opened again when writes still fail
 * with room on the disk, or afresh when its directory went. LevelDB fails every write after one
 * table it could not write until it is opened again. An index directory that another node made
 * in place of a removed one is that node's: this one is closed at once, and opens that one when
 * the other lets go of it.
 */
import { createHash } from 'node:crypto'
import { createReadStream, statSync } from 'node:fs'
import { mkdir, readdir, readFile, rename, rm, stat, statfs, unlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { Level } from 'level'
import { CACHE_ID_BYTES, GridError, MAX_RECALL, errorCode, Packr, RECALL_RECORD_BYTES, type CacheStats, type GcResult, type VerifyResult } from '@grid/protocol'
import { logger } from '../log.js'
import { AbsentFilter } from './absent.js'
import { ATIME_FLUSH_MS, GC_SPARES_RECENT_MS, BLOB_DIR, INDEX_DIR, INDEX_HEAL_MS, INDEX_REOPEN_FREE_BYTES, MAX_RECALL_LISTS, ORPHAN_GRACE_MS, RECALL_SLICE, STALE_TMP_MS, TMP_DIR } from './constants.js'
import { blobPathFor } from './layout.js'

const log = logger('grid:cache')
const packr = new Packr({ useRecords: false, mapsAsObjects: true })

export interface CacheInit {
  /** The cache dir: holds `index/` and `blobs/`. */
  dir: string
  /** This node's PeerId: the producer recorded on its own puts. */
  nodeId: string
  /** How often the index is checked and healed (INDEX_HEAL_MS); tests shorten it. */
  healMs?: number
}

export interface CacheHit {
  outputId: Uint8Array
  size: number
  /** When the entry was put, unix ms. */
  time: number
  diskPath: string
  /** PeerId of the node that produced the entry */
  producer: string
  /** For entries fetched from peers: the producer's signature, its toolchain, who served it. */
  sig: Uint8Array | undefined
  /** the producer's toolchain (toolchainLabel); for this node's own entries, when it was known at the put */
  toolchain: string | undefined
  servedBy: string | undefined
  /** false for an entry of a build whose compiler was not the node's: never served to peers */
  shared: boolean
  /** an own entry put before the node knew its own compiler: the stamp of the build's compiler, if it said */
  compiler?: string | undefined
  /** an own entry whose compile ran on a peer's worker: that worker's PeerId (invariant 5) */
  worker?: string | undefined
}

/**
 * How an own put was made: under which toolchain (when the node knew its own compiler made it),
 * whether it may be served to peers at all, and, when the node could not tell yet whose compiler
 * made it (not probed yet: an embedded node that never joins the mesh, or a daemon starting),
 * the stamp of the compiler the build named (its GOTOOLDIR's), for `claimFor` to compare.
 * `worker`: the PeerId of the peer whose worker compiled it, when one did (invariant 5).
 */
export interface OwnPut { toolchain: string | undefined, shared: boolean, compiler?: string, worker?: string }

/** What `recall` found: the entries packed for the helper, and each by hex ActionID. */
export interface Recalled {
  packed: Buffer
  entries: Map<string, { outputId: Uint8Array, size: number }>
}

/** Provenance of an entry that came from another node. */
export interface EntryOrigin {
  producer: string
  sig: Uint8Array
  toolchain: string
  servedBy: string
  time: number
}

/** One index row. Short keys: there are tens of thousands of these. */
interface Entry {
  /** OutputID */
  o: Uint8Array
  /** body size */
  s: number
  /** put time, unix ms */
  t: number
  /** producer PeerId */
  p: string
  /** blob stamp when last hashed or written: inode and ctime in ns, as decimal strings */
  i: string
  c: string
  /** entries from peers: producer's signature, its toolchain, the peer that served it (k: also own entries' toolchain) */
  g?: Uint8Array
  k?: string
  b?: string
  /** set: an own entry of a build whose compiler was not the node's, never served to peers */
  n?: true
  /** an own entry put before the node knew its compiler: the stamp of the build's (compilerStamp) */
  x?: string
  /** an own entry whose compile ran on a peer: that worker's PeerId (absent from entries put before it was recorded) */
  w?: string
}

/** The slice of abstract-level's sublevel API the cache uses, typed for string keys and byte values. */
interface Sub {
  open: () => Promise<void>
  get: (key: string) => Promise<Uint8Array | undefined>
  getSync: (key: string) => Uint8Array | undefined
  put: (key: string, value: Uint8Array) => Promise<void>
  del: (key: string) => Promise<void>
  batch: (ops: Array<{ type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }>) => Promise<void>
  iterator: () => AsyncIterable<[string, Uint8Array]>
  keys: () => AsyncIterable<string>
}

export interface CacheEvents {
  /** A blob failed its hash and was dropped. */
  onCorrupt?: (outputHex: string) => void
}

export class Cache {
  readonly dir: string
  readonly blobDir: string
  readonly nodeId: string
  /** The index and its sublevels: replaced as one when `heal` opens it again. */
  private index: OpenIndex
  private get db (): Index { return this.index.db }
  private get entries (): Sub { return this.index.entries }
  private get atimes (): Sub { return this.index.atimes }
  /** recall key → the ActionIDs (32 bytes each) its last build looked up */
  private get recallLists (): Sub { return this.index.recallLists }
  /** recall key → when its list was written (for keeping the newest MAX_RECALL_LISTS) */
  private get recallTimes (): Sub { return this.index.recallTimes }
  private readonly pendingAtimes = new Map<string, number>()
  private readonly pendingEntries: Array<{ key: string, value: Uint8Array, resolve: () => void, reject: (err: unknown) => void }> = []
  /** The batch of index writes on its way to LevelDB, if any (close waits for it). */
  private entriesWriting: Promise<void> = Promise.resolve()
  /** Recall lists being written (close waits for them). */
  private readonly remembering = new Set<Promise<void>>()
  private readonly rehashing = new Map<string, Promise<BlobState>>()
  /** Blobs (hex OutputIDs) `gc` has chosen and is removing: a get or recall does not hand them out. */
  private readonly removing = new Set<string>()
  private flushTimer: NodeJS.Timeout | undefined
  private approx: number | undefined
  /** The absent filter once a scan of the index has filled it (invariant 8) */
  private absent: AbsentFilter | undefined
  /** While a scan fills a new filter: the keys written meanwhile, added when it is done */
  private absentLate: Uint8Array[] | undefined
  /** Keys of the index batches being written (between pendingEntries and LevelDB) */
  private readonly writingKeys = new Set<string>()
  private closed = false
  /** The first index write that failed since the last that went through, if one did */
  private writesFailing: string | undefined
  private readonly healMs: number
  private healTimer: NodeJS.Timeout | undefined
  private healing: Promise<boolean> | undefined
  /** While `heal` closes the index and opens it again: writes wait for it */
  private reopening: Promise<void> | undefined
  /** The inode of the index dir this cache opened: another there is another node's */
  private indexIno: bigint
  private lastWarning: string | undefined
  events: CacheEvents = {}

  private constructor (init: CacheInit, index: OpenIndex, indexIno: bigint) {
    this.dir = init.dir
    this.nodeId = init.nodeId
    this.blobDir = join(init.dir, BLOB_DIR)
    this.healMs = init.healMs ?? INDEX_HEAL_MS
    this.index = index
    this.indexIno = indexIno
  }

  static async open (init: CacheInit): Promise<Cache> {
    await mkdir(join(init.dir, BLOB_DIR, TMP_DIR), { recursive: true }).catch((err: Error) => {
      throw new GridError('GRID_ERR_CACHE_OPEN', `cannot make the blob store in ${init.dir}: ${err.message}`, {
        cause: err,
        hint: `free some space on the cache dir's disk; if ${join(init.dir, BLOB_DIR)} is not a directory, move it aside`
      })
    })
    const index = await withSublevels(await openIndex(init.dir))
    const cache = new Cache(init, index, (await stat(join(init.dir, INDEX_DIR), { bigint: true })).ino)
    cache.flushTimer = setInterval(() => { void cache.flushAtimes() }, ATIME_FLUSH_MS)
    cache.flushTimer.unref()
    cache.healTimer = setInterval(() => { void cache.heal() }, cache.healMs)
    cache.healTimer.unref()
    void cache.fillAbsent()
    return cache
  }

  /**
   * Whether the index takes writes, making it do so if it can: once a write has failed (a full
   * disk) a write is tried again, and when that fails too while the disk has room, the index is
   * closed and opened again (LevelDB fails every write after a table it could not write, until
   * then). An index whose directory has gone (the cache dir removed while the node ran: LevelDB
   * goes on in files no one can open again, until it needs a new one) is opened afresh. Runs
   * every INDEX_HEAL_MS; does nothing while writes go through and the directory is there.
   */
  async heal (): Promise<boolean> {
    this.healing ??= this.healOnce().finally(() => { this.healing = undefined })
    return await this.healing
  }

  private async healOnce (): Promise<boolean> {
    if (this.closed || this.reopening !== undefined) return false
    const indexDir = join(this.dir, INDEX_DIR)
    const st = await stat(indexDir, { bigint: true }).catch((err: NodeJS.ErrnoException) => isGone(err) ? undefined : null)
    if (st === null) return false // cannot tell now
    const gone = st === undefined
    // Another node's index in its place: the cache dir was removed while this node ran, and a
    // node started since (a build's, with no daemon answering) opened one there. This one must
    // not go on in that directory: LevelDB makes files there by its own numbering, and deletes
    // the ones it does not know. Closed now, and opened there once the other node lets go.
    const replaced = st !== undefined && st.ino !== this.indexIno
    if (replaced && this.db.status === 'open') {
      this.warnOnce(`the cache index ${indexDir} is another node's now (the cache dir was removed while this node ran): closing this one, and opening that one once the other node is done with it`)
      await this.closeIndex()
    }
    if (!gone && !replaced) {
      if (this.writesFailing === undefined) return true
      try {
        await this.db.del(HEAL_PROBE_KEY)
        log.warn(`the cache index takes writes again (they failed from: ${this.writesFailing})`)
        this.writesFailing = undefined
        return true
      } catch {}
      // LevelDB writes a table and a manifest as it opens: without room for them it would not
      // open, and the node would be left with no index to read until it did
      const room = await statfs(this.dir).then(s => s.bavail * s.bsize, () => 0)
      if (room < INDEX_REOPEN_FREE_BYTES) return false
    }
    // Closed, the index opens again only if its file system takes files (not full, not gone
    // read-only): a failed open leaves no index to read. Until then the old one serves reads.
    try {
      await mkdir(join(this.dir, BLOB_DIR, TMP_DIR), { recursive: true })
      await mkdir(indexDir, { recursive: true })
      const probe = join(indexDir, `${HEAL_PROBE_KEY}.${process.pid}`)
      await writeFile(probe, Buffer.alloc(HEAL_PROBE_BYTES))
      await unlink(probe)
    } catch {
      return false
    }
    if (gone) log.warn(`the cache index ${indexDir} has gone (removed while the node ran): starting a new one`)
    else if (!replaced) log.warn(`the cache index still fails writes (${this.writesFailing ?? ''}) with room on its disk: opening it again`)
    let reopened!: () => void
    this.reopening = new Promise<void>(resolve => { reopened = resolve })
    try {
      await this.closeIndex()
      const index = await withSublevels(await openIndex(this.dir))
      if (this.closed) { await index.db.close(); return false }
      const ino = (await stat(indexDir, { bigint: true })).ino
      // in one turn: every reader sees the old index (closed: a miss) or the new one
      this.index = index
      this.indexIno = ino
      this.approx = undefined
      this.writesFailing = undefined
      this.lastWarning = undefined
      // another node's entries are in no bit of the filter (invariant 8): scanned in
      if (replaced) void this.fillAbsent()
      log.warn(`the cache index ${indexDir} is open again and takes writes`)
      return true
    } catch (err) {
      // no index now: lookups miss and writes fail until the next round opens it
      this.noteWriteFailure(err)
      this.warnOnce(`cannot open the cache index again: ${errorCode(err)?.startsWith('GRID_ERR_') === true ? (err as Error).message : levelMessage(err)}; trying again every ${this.healMs / 1000} s`)
      return false
    } finally {
      this.reopening = undefined
      reopened()
    }
  }

  /** Closes the index once the writes on their way to it have settled. */
  private async closeIndex (): Promise<void> {
    await this.entriesWriting
    await Promise.allSettled(this.remembering)
    await this.db.close().catch(() => {})
  }

  /** A warning of `heal`'s, logged when it differs from the last one (it retries every round). */
  private warnOnce (message: string): void {
    if (message !== this.lastWarning) log.warn(message)
    this.lastWarning = message
  }

  /** An index write failed: `heal` tries it again from its next round. */
  private noteWriteFailure (err: unknown): void {
    this.writesFailing ??= levelMessage(err)
  }

  blobPath (outputHex: string): string {
    return blobPathFor(this.blobDir, outputHex)
  }

  /**
   * Looks up an ActionID; a hit's blob is checked against its stamp (invariant 3). Returns
   * 'corrupt' when the entry existed but its blob failed the hash and was dropped; a blob that
   * cannot be read is a miss, and its entry stays for the next get.
   */
  async get (actionId: Uint8Array, pin?: Set<string>): Promise<CacheHit | 'corrupt' | undefined> {
    const key = hex(actionId)
    // Synchronous on purpose: a get sits on an action's critical path, and a LevelDB read from
    // the block cache (and a stat from the page cache) costs microseconds, far less than the
    // thread-pool round trip of the async calls (measured: no-op builds ~2x faster).
    const raw = this.readEntry(key)
    if (raw === undefined) return undefined
    const entry = decodeEntry(raw)
    if (entry === undefined) {
      log.warn(`dropping undecodable index entry ${key}`)
      await this.dropEntry(key)
      return undefined
    }
    const outputHex = hex(entry.o)
    const path = this.blobPath(outputHex)
    const state = await this.checkBlob(key, entry, path)
    if (state !== 'ok') return state === 'corrupt' ? 'corrupt' : undefined
    // from here to the return in one turn: pinned now, or being removed and a miss (invariant 6)
    if (this.removing.has(outputHex)) return undefined
    pin?.add(outputHex)
    this.pendingAtimes.set(key, Date.now())
    return { outputId: entry.o, size: entry.s, time: entry.t, diskPath: path, producer: entry.p, sig: entry.g, toolchain: entry.k, servedBy: entry.b, shared: entry.n !== true, compiler: entry.x, worker: entry.w }
  }

  /**
   * The absent filter for the cache helper (invariant 8), or undefined until the first scan of
   * the index has filled it. The caller may send it as it is: bits set later only widen it.
   */
  absentFilter (): Uint8Array | undefined {
    return this.absent?.bits
  }

  /** Notes a hit served without `get` (a recalled entry): for `gc`'s least-recently-used order. */
  touch (actionHex: string): void {
    this.pendingAtimes.set(actionHex, Date.now())
  }

  /**
   * The entries still in the index for the ActionIDs remembered under the first of `keys` that
   * has a list (invariant 7), packed as RECALL_RECORD_BYTES records for the helper, each pinned
   * in `pin` as it is packed. Blobs are not stat'ed here: the helper checks each one's stamp
   * when cmd/go asks for it.
   */
  async recall (keys: string[], pin?: Set<string>): Promise<Recalled> {
    let list: Uint8Array | undefined
    for (const key of keys) {
      list = await this.recallLists.get(key)
      if (list !== undefined) break
    }
    const entries = new Map<string, { outputId: Uint8Array, size: number }>()
    if (list === undefined) return { packed: Buffer.alloc(0), entries }
    const count = Math.min(Math.floor(list.length / CACHE_ID_BYTES), MAX_RECALL)
    const packed = Buffer.alloc(count * RECALL_RECORD_BYTES)
    let n = 0
    for (let i = 0; i < count; i++) {
      // ~20 µs an entry: let other requests in between
      if (i % RECALL_SLICE === RECALL_SLICE - 1) await new Promise(resolve => setImmediate(resolve))
      const actionId = list.subarray(i * CACHE_ID_BYTES, (i + 1) * CACHE_ID_BYTES)
      const actionHex = hex(actionId)
      const raw = this.readEntry(actionHex)
      const entry = raw === undefined ? undefined : decodeEntry(raw)
      if (entry === undefined || entries.has(actionHex)) continue
      let ino, ctime
      try { ino = BigInt(entry.i); ctime = BigInt(entry.c) } catch { continue }
      const outputHex = hex(entry.o)
      if (this.removing.has(outputHex)) continue
      pin?.add(outputHex)
      const at = n++ * RECALL_RECORD_BYTES
      packed.set(actionId, at)
      packed.set(entry.o, at + 32)
      packed.writeBigUInt64BE(BigInt(entry.s), at + 64)
      packed.writeBigUInt64BE(BigInt(entry.t), at + 72)
      packed.writeBigUInt64BE(BigInt.asUintN(64, ino), at + 80)
      packed.writeBigUInt64BE(BigInt.asUintN(64, ctime), at + 88)
      entries.set(actionHex, { outputId: entry.o, size: entry.s })
    }
    return { packed: packed.subarray(0, n * RECALL_RECORD_BYTES), entries }
  }

  /**
   * Remembers the ActionIDs (hex) a build looked up under each of `keys`, replacing their last
   * lists, and forgets the oldest lists beyond MAX_RECALL_LISTS.
   */
  async remember (keys: string[], actionHexes: Iterable<string>): Promise<void> {
    const ids: Buffer[] = []
    for (const h of actionHexes) {
      if (ids.length === MAX_RECALL) break
      ids.push(Buffer.from(h, 'hex'))
    }
    if (this.closed) return
    await this.reopening
    const writing = this.writeRecall(keys, Buffer.concat(ids))
    this.remembering.add(writing)
    try {
      await writing
    } catch (err) {
      this.noteWriteFailure(err)
      throw err
    } finally {
      this.remembering.delete(writing)
    }
  }

  private async writeRecall (keys: string[], list: Buffer): Promise<void> {
    const now = writeTime(Date.now())
    await this.recallLists.batch(keys.map(key => ({ type: 'put' as const, key, value: list })))
    await this.recallTimes.batch(keys.map(key => ({ type: 'put' as const, key, value: now })))
    const times: Array<[string, number]> = []
    for await (const [k, raw] of this.recallTimes.iterator()) times.push([k, readTime(raw)])
    if (times.length <= MAX_RECALL_LISTS) return
    times.sort((a, b) => a[1] - b[1])
    const old = times.slice(0, times.length - MAX_RECALL_LISTS).map(([k]) => k)
    await this.recallLists.batch(old.map(k => ({ type: 'del' as const, key: k })))
    await this.recallTimes.batch(old.map(k => ({ type: 'del' as const, key: k })))
  }

  /**
   * Records ActionID → OutputID. The blob must already be in place (invariant 2): the caller
   * hashed it. Returns the blob path.
   */
  async put (actionId: Uint8Array, outputId: Uint8Array, size: number, origin?: EntryOrigin, pin?: Set<string>, own?: OwnPut): Promise<string> {
    const outputHex = hex(outputId)
    const path = this.blobPath(outputHex)
    let st
    try {
      // Synchronous: the inode is in the page cache (the helper just wrote it), and a put per
      // compile output makes the thread-pool hop cost more than the stat.
      st = statSync(path, { bigint: true })
    } catch (err) {
      throw new GridError('GRID_ERR_CACHE_MISSING_BLOB', `put of ${outputHex} names a blob that is not on disk`, { cause: err })
    }
    if (st.size !== BigInt(size)) {
      throw new GridError('GRID_ERR_CACHE_MISSING_BLOB', `put of ${outputHex} says ${size} bytes, the blob has ${st.size}`)
    }
    // in the turn of the stat: pinned, or refused while gc removes it (invariant 6)
    if (this.removing.has(outputHex)) throw new GridError('GRID_ERR_CACHE_MISSING_BLOB', `put of ${outputHex} names a blob that gc is removing`)
    pin?.add(outputHex)
    const key = hex(actionId)
    const entry: Entry = origin === undefined
      ? { o: outputId, s: size, t: Date.now(), p: this.nodeId, i: st.ino.toString(), c: st.ctimeNs.toString(), ...(own?.toolchain === undefined ? {} : { k: own.toolchain }), ...(own?.shared === false ? { n: true as const } : {}), ...(own?.compiler === undefined ? {} : { x: own.compiler }), ...(own?.worker === undefined ? {} : { w: own.worker }) }
      : { o: outputId, s: size, t: origin.time, p: origin.producer, i: st.ino.toString(), c: st.ctimeNs.toString(), g: origin.sig, k: origin.toolchain, b: origin.servedBy }
    this.noteAbsent(actionId)
    await this.writeEntry(key, packr.pack(entry))
    if (this.approx !== undefined) this.approx += size
    this.pendingAtimes.set(key, Date.now())
    return path
  }

  /**
   * Writes a body into the store (tmp file, rename: invariant 1) and records it, pinned in `pin`
   * (`put`). The body is hashed here; `expected`, if given, must match or nothing is written. A
   * blob already in place with these very bytes is left as it is: a copy renamed over it would
   * have a new inode, and every other entry naming it would fail its stamp (invariant 3) and cost
   * a re-hash. One of other bytes (corrupt, of the same size or not) is replaced. For callers in
   * this process (bodies fetched from peers, tests); the Go helper writes blobs itself.
   */
  async putBytes (actionId: Uint8Array, body: Uint8Array, origin?: EntryOrigin, expected?: Uint8Array, pin?: Set<string>): Promise<{ outputId: Uint8Array, diskPath: string }> {
    const outputId = createHash('sha256').update(body).digest()
    if (expected !== undefined && !outputId.equals(expected)) {
      throw new GridError('GRID_ERR_CACHE_CORRUPT', `body hashes to ${hex(outputId)}, not ${hex(expected)}`)
    }
    const path = this.blobPath(hex(outputId))
    if (!await holds(path, body)) {
      const tmp = join(this.blobDir, TMP_DIR, `${hex(outputId)}.${process.pid}.${Math.random().toString(36).slice(2)}`)
      await writeFile(tmp, body)
      // The shard directory exists after its first blob: make it only when the rename says not.
      await rename(tmp, path).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err
        await mkdir(dirname(path), { recursive: true })
        await rename(tmp, path)
      })
    }
    // A blob kept as it was is as old as it is, so gc does not spare it as just written: the
    // build that is handed it pins it in the turn of the put.
    await this.put(actionId, outputId, body.length, origin, pin)
    return { outputId, diskPath: path }
  }

  /**
   * A blob's bytes for a peer, hashed on the way out: a node never serves a body that does not
   * hash to its name (a corrupt one is deleted, as on a local get).
   */
  async readVerified (outputHex: string): Promise<Buffer | undefined> {
    const body = await readFile(this.blobPath(outputHex)).catch(() => undefined)
    if (body === undefined) return undefined
    if (createHash('sha256').update(body).digest('hex') !== outputHex) {
      log.warn(`blob ${outputHex} does not hash to its name: corrupt on disk; dropped instead of served`)
      await rm(this.blobPath(outputHex), { force: true })
      this.events.onCorrupt?.(outputHex)
      return undefined
    }
    return body
  }

  /** Approximate bytes of blobs, kept up to date by puts after one scan (for --cache-max). */
  async approxBytes (): Promise<number> {
    this.approx ??= (await this.stats()).bytes
    return this.approx
  }

  /** Entry count, distinct blobs and their bytes, and the entries compiled on peers, by worker (a scan of the index). */
  async stats (): Promise<CacheStats> {
    const blobs = new Map<string, number>()
    let entries = 0
    const compiledOnPeers = { entries: 0, byPeer: {} as Record<string, number> }
    for await (const [, raw] of this.entries.iterator()) {
      const entry = decodeEntry(raw)
      if (entry === undefined) continue
      entries++
      blobs.set(hex(entry.o), entry.s)
      if (entry.w !== undefined) {
        compiledOnPeers.entries++
        compiledOnPeers.byPeer[entry.w] = (compiledOnPeers.byPeer[entry.w] ?? 0) + 1
      }
    }
    let bytes = 0
    for (const size of blobs.values()) bytes += size
    return { dir: this.dir, entries, blobs: blobs.size, bytes, compiledOnPeers }
  }

  /**
   * Trims the cache to `maxBytes` of blobs, least recently used first, never touching a blob
   * `pinned` says a running build holds (asked at the moment of removal, invariant 6) or one
   * written in the last GC_SPARES_RECENT_MS. Also removes stale tmp files and old orphan blobs.
   */
  async gc (maxBytes: number, pinned: (outputHex: string) => boolean = () => false): Promise<GcResult> {
    const now = Date.now()
    await this.flushAtimes()
    const atimes = new Map<string, number>()
    for await (const [key, raw] of this.atimes.iterator()) atimes.set(key, readTime(raw))
    const blobs = new Map<string, { size: number, last: number, keys: string[] }>()
    for await (const [key, raw] of this.entries.iterator()) {
      const entry = decodeEntry(raw)
      if (entry === undefined) continue
      const outputHex = hex(entry.o)
      const last = atimes.get(key) ?? entry.t
      const blob = blobs.get(outputHex)
      if (blob === undefined) blobs.set(outputHex, { size: entry.s, last, keys: [key] })
      else { blob.last = Math.max(blob.last, last); blob.keys.push(key) }
    }
    let total = 0
    for (const b of blobs.values()) total += b.size
    const order = [...blobs.entries()].sort((a, b) => a[1].last - b[1].last)
    let removedEntries = 0
    let removedBlobs = 0
    let removedBytes = 0
    let kept = 0
    let keptBecause = ''
    // over the size but left: held by a running build, or written too recently (invariant 6)
    const spared = { blobs: 0, bytes: 0 }
    const spare = (blob: { size: number }): void => { spared.blobs++; spared.bytes += blob.size }
    for (const [outputHex, blob] of order) {
      if (total <= maxBytes) break
      if (pinned(outputHex) || this.removing.has(outputHex)) { spare(blob); continue }
      this.removing.add(outputHex) // in the turn that checked the pins: no hit hands it out now
      try {
        const st = await stat(this.blobPath(outputHex)).catch(() => undefined)
        if (st !== undefined && now - st.mtimeMs < GC_SPARES_RECENT_MS) { spare(blob); continue }
        // The blob first: a trim is for the space, and on a full disk the index cannot take
        // the deletions. An entry left naming a removed blob is a miss, dropped by the get
        // (or the verify) that finds its blob gone.
        await rm(this.blobPath(outputHex), { force: true })
        const keys = blob.keys.map(key => ({ type: 'del' as const, key }))
        try {
          await this.entries.batch(keys)
          removedEntries += blob.keys.length
          await this.atimes.batch(keys)
        } catch (err) {
          this.noteWriteFailure(err)
          kept += blob.keys.length
          keptBecause ||= levelMessage(err)
        }
      } finally {
        this.removing.delete(outputHex)
      }
      total -= blob.size
      removedBlobs++
      removedBytes += blob.size
    }
    if (kept > 0) log.warn(`gc: the index did not take the removal of ${kept} entries whose blobs went (${keptBecause}); they are dropped as lookups find their blobs gone`)
    const orphans = await this.removeOrphans(new Set(blobs.keys()), pinned)
    removedBlobs += orphans.count
    removedBytes += orphans.bytes
    this.approx = undefined
    log.info(`gc to ${maxBytes} bytes: removed ${removedEntries} entries, ${removedBlobs} blobs, ${removedBytes} bytes` +
      (spared.blobs > 0 ? `; spared ${spared.blobs} blobs, ${spared.bytes} bytes, in use or written in the last ${GC_SPARES_RECENT_MS / 60_000} minutes` : ''))
    return { removedEntries, removedBlobs, removedBytes, spared, stats: await this.stats() }
  }

  /**
   * Re-hashes every blob file; deletes the corrupt ones and drops every entry whose blob is
   * gone, of the wrong size or not a file (a directory in its place is left there). A blob that
   * cannot be read is left as it is, with its entries, and counted `unreadable`.
   */
  async verify (): Promise<VerifyResult> {
    let checked = 0
    let corrupt = 0
    const unreadable = new Set<string>()
    const cannotRead = (name: string, code: string): void => {
      if (unreadable.has(name)) return
      unreadable.add(name)
      log.warn(`verify: blob ${name} cannot be read (${code}); left as it is, with its entries`)
    }
    for (const { name, path } of await this.blobFiles()) {
      const st = await stat(path).catch((err: NodeJS.ErrnoException) => err)
      if (st instanceof Error) {
        if (!isGone(st)) cannotRead(name, errno(st))
        continue // gone since the listing: its entries are dropped below
      }
      if (!st.isFile()) {
        log.warn(`verify: ${path} is not a file; left as it is, and the entries naming it are dropped`)
        continue
      }
      const { state, code } = await hashBlob(path, name)
      if (state === 'missing') continue
      if (state === 'unreadable') { cannotRead(name, code); continue }
      checked++
      if (state === 'corrupt') {
        corrupt++
        log.warn(`verify: blob ${name} does not hash to its name; removed`)
        await rm(path, { force: true })
        this.events.onCorrupt?.(name)
      }
    }
    let missing = 0
    const drop: string[] = []
    for await (const [key, raw] of this.entries.iterator()) {
      const entry = decodeEntry(raw)
      if (entry === undefined) { missing++; drop.push(key); continue }
      const outputHex = hex(entry.o)
      const st = await stat(this.blobPath(outputHex)).catch((err: NodeJS.ErrnoException) => err)
      if (st instanceof Error && !isGone(st)) { cannotRead(outputHex, errno(st)); continue }
      if (st instanceof Error || !st.isFile() || st.size !== entry.s) { missing++; drop.push(key) }
    }
    let removedEntries = drop.length
    try {
      await this.entries.batch(drop.map(key => ({ type: 'del' as const, key })))
      await this.atimes.batch(drop.map(key => ({ type: 'del' as const, key })))
    } catch (err) {
      // a full disk: the blobs were checked all the same, and a lookup drops such an entry
      this.indexWriteFailed(`verify dropping ${drop.length} entries`, err)
      removedEntries = 0
    }
    // `unreadable` only when there were some (the field is optional: absent means none)
    const result: VerifyResult = { checked, corrupt, missing, removedEntries }
    if (unreadable.size > 0) result.unreadable = unreadable.size
    return result
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.flushTimer)
    clearInterval(this.healTimer)
    await this.healing
    await this.flushEntries()
    await this.entriesWriting
    await Promise.allSettled(this.remembering)
    await this.flushAtimes()
    await this.db.close()
  }

  /**
   * Invariant 3: serve a blob only if it still has the stamp of its last check, or re-hashes.
   * Only a failed hash deletes it; one that cannot be read now (EMFILE, EIO) is a miss, and its
   * entry keeps the old stamp, so the next get re-hashes it again.
   */
  private async checkBlob (key: string, entry: Entry, path: string): Promise<BlobState> {
    const outputHex = hex(entry.o)
    let st
    try {
      st = statSync(path, { bigint: true, throwIfNoEntry: false })
    } catch (err) {
      log.warn(`blob ${outputHex} of ${key} cannot be read (${errno(err)}): a miss this time; kept`)
      return 'unreadable'
    }
    if (st === undefined || !st.isFile() || st.size !== BigInt(entry.s)) {
      log.warn(`blob ${outputHex} of ${key} is ${st === undefined ? 'missing' : st.isFile() ? 'of the wrong size' : 'not a file'}; dropping the entry`)
      await this.dropEntry(key)
      return 'missing'
    }
    if (st.ino.toString() === entry.i && st.ctimeNs.toString() === entry.c) return 'ok'
    let pending = this.rehashing.get(outputHex)
    if (pending === undefined) {
      // one hash, and one warning, for every get waiting on this blob
      pending = hashBlob(path, outputHex).then(({ state, code }) => {
        if (state === 'unreadable') log.warn(`blob ${outputHex} cannot be read to re-hash it (${code}): a miss this time; kept`)
        return state
      })
      this.rehashing.set(outputHex, pending)
      void pending.finally(() => this.rehashing.delete(outputHex))
    }
    const state = await pending
    if (state === 'ok') {
      // The new stamp only saves the next get a hash: a write that fails (a full disk) leaves
      // the old one, and the next get hashes again.
      const now = await stat(path, { bigint: true }).catch(() => undefined)
      if (now !== undefined) {
        await this.entries.put(key, packr.pack({ ...entry, i: now.ino.toString(), c: now.ctimeNs.toString() }))
          .catch((err: unknown) => { this.indexWriteFailed(`the new stamp of blob ${outputHex}`, err) })
      }
      return 'ok'
    }
    if (state === 'unreadable') return 'unreadable'
    if (state === 'missing') {
      log.warn(`blob ${outputHex} of ${key} went while it was re-hashed; dropping the entry`)
      await this.dropEntry(key)
      return 'missing'
    }
    log.warn(`blob ${outputHex} of ${key} does not hash to its name: corrupt on disk; dropped, the action will be rebuilt`)
    await rm(path, { force: true })
    await this.dropEntry(key)
    this.events.onCorrupt?.(outputHex)
    return 'corrupt'
  }

  /**
   * Drops an entry whose blob is gone or bad. The lookup is a miss either way: when the index
   * cannot be written (a full disk), the entry stays, and the next get finds its blob gone again.
   */
  private async dropEntry (key: string): Promise<void> {
    await this.entries.del(key).catch((err: unknown) => { this.indexWriteFailed(`dropping entry ${key}`, err) })
  }

  /** A write to the index that a lookup made on the side failed: logged, and the lookup goes on. */
  private indexWriteFailed (what: string, err: unknown): void {
    this.noteWriteFailure(err)
    log.warn(`cannot write the cache index (${what}): ${levelMessage(err)}`)
  }

  /**
   * An entry's raw value, or undefined. A read that fails (a damaged table; the index closed
   * while `heal` opens it again) is a miss: logged, and the lookup goes on.
   */
  private readEntry (key: string): Uint8Array | undefined {
    if (this.db.status !== 'open') return undefined // closed until `heal` opens it again, which logs why
    try {
      return this.entries.getSync(key)
    } catch (err) {
      log.warn(`cannot read entry ${key} of the cache index: ${levelMessage(err)}`)
      return undefined
    }
  }

  /**
   * Queues an index write; writes queued in the same turn of the event loop go to LevelDB as
   * one batch (a cold build puts an entry per action, many at once).
   */
  private async writeEntry (key: string, value: Uint8Array): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.pendingEntries.push({ key, value, resolve, reject })
      if (this.pendingEntries.length === 1) setImmediate(() => { void this.flushEntries() })
    })
  }

  private async flushEntries (): Promise<void> {
    await this.reopening
    const writes = this.pendingEntries.splice(0)
    if (writes.length === 0) return
    for (const w of writes) this.writingKeys.add(w.key)
    const written = this.entries.batch(writes.map(w => ({ type: 'put' as const, key: w.key, value: w.value })))
    this.entriesWriting = written.then(() => {}, () => {})
    try {
      await written
      for (const w of writes) w.resolve()
    } catch (err) {
      this.noteWriteFailure(err)
      for (const w of writes) w.reject(err)
    } finally {
      for (const w of writes) this.writingKeys.delete(w.key)
    }
  }

  /** A key is about to be written: into the filter first (invariant 8). */
  private noteAbsent (actionId: Uint8Array): void {
    // a refill started here takes its list of late keys at once: this one must go in it too
    if (this.absent?.crowded === true && this.absentLate === undefined) void this.fillAbsent()
    this.absent?.add(actionId)
    this.absentLate?.push(actionId)
  }

  /**
   * Fills a new absent filter from a scan of the index, sized for twice the entries found and
   * those written meanwhile, and puts it in place of the old one. Keys written during the scan,
   * and those on their way to LevelDB as it starts (which the scan may not see), are added to
   * both. On failure the old filter stays (or none: the helper then asks the node about every
   * miss).
   */
  private async fillAbsent (): Promise<void> {
    if (this.absentLate !== undefined) return
    const late: Uint8Array[] = []
    this.absentLate = late
    for (const w of this.pendingEntries) late.push(Buffer.from(w.key, 'hex'))
    for (const key of this.writingKeys) late.push(Buffer.from(key, 'hex'))
    try {
      // the ActionIDs found, packed: an index of a million entries costs 32 MB here, not 100
      let ids = Buffer.alloc(CACHE_ID_BYTES * 1024)
      let n = 0
      for await (const key of this.entries.keys()) {
        if ((n + 1) * CACHE_ID_BYTES > ids.length) ids = Buffer.concat([ids, Buffer.alloc(ids.length)])
        if (ids.write(key, n * CACHE_ID_BYTES, CACHE_ID_BYTES, 'hex') === CACHE_ID_BYTES) n++
      }
      const next = new AbsentFilter(2 * (n + late.length)) // late ones may be new
      for (let i = 0; i < n; i++) next.add(ids.subarray(i * CACHE_ID_BYTES, (i + 1) * CACHE_ID_BYTES))
      for (const id of late) next.add(id)
      this.absent = next
    } catch (err) {
      if (!this.closed) log.warn(`scanning the index for the absent filter failed: ${(err as Error).message}`)
    } finally {
      this.absentLate = undefined
    }
  }

  private async flushAtimes (): Promise<void> {
    await this.reopening
    if (this.pendingAtimes.size === 0 || this.db.status !== 'open') return
    const ops = [...this.pendingAtimes].map(([key, t]) => ({ type: 'put' as const, key, value: writeTime(t) }))
    this.pendingAtimes.clear()
    await this.atimes.batch(ops).catch((err: Error) => {
      this.noteWriteFailure(err)
      log.warn(`writing access times failed: ${levelMessage(err)}`)
    })
  }

  private async blobFiles (): Promise<Array<{ name: string, path: string, dir: string }>> {
    const out: Array<{ name: string, path: string, dir: string }> = []
    for (const shard of await readdir(this.blobDir)) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue
      const dir = join(this.blobDir, shard)
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        if (/^[0-9a-f]{64}$/.test(name)) out.push({ name, path: join(dir, name), dir })
      }
    }
    return out
  }

  private async removeOrphans (known: ReadonlySet<string>, pinned: (outputHex: string) => boolean): Promise<{ count: number, bytes: number }> {
    const now = Date.now()
    let count = 0
    let bytes = 0
    for (const { name, path } of await this.blobFiles()) {
      if (known.has(name) || pinned(name) || this.removing.has(name)) continue
      // Marked in the turn that checked the pins, as gc's main loop does (invariant 6): a put of
      // the same bytes (another action made them) is refused from now on, rather than pinning
      // the blob and handing its path to cmd/go while it is unlinked here.
      this.removing.add(name)
      try {
        const st = await stat(path).catch(() => undefined)
        if (st === undefined || now - st.mtimeMs < ORPHAN_GRACE_MS) continue
        if (pinned(name)) continue // pinned during the stat other than by a put (a build's own pin)
        await unlink(path).catch(() => {})
        count++
        bytes += st.size
      } finally {
        this.removing.delete(name)
      }
    }
    const tmp = join(this.blobDir, TMP_DIR)
    for (const name of await readdir(tmp).catch(() => [] as string[])) {
      const st = await stat(join(tmp, name)).catch(() => undefined)
      if (st !== undefined && now - st.mtimeMs > STALE_TMP_MS) await unlink(join(tmp, name)).catch(() => {})
    }
    return { count, bytes }
  }
}

function decodeEntry (raw: Uint8Array): Entry | undefined {
  try {
    const e = packr.unpack(raw) as Partial<Entry>
    if (e.o instanceof Uint8Array && typeof e.s === 'number' && typeof e.t === 'number' && typeof e.p === 'string' &&
      typeof e.i === 'string' && typeof e.c === 'string' && (e.g === undefined || e.g instanceof Uint8Array) &&
      (e.w === undefined || typeof e.w === 'string')) return e as Entry
  } catch {}
  return undefined
}

export function hex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export async function hashFile (path: string): Promise<string> {
  const hash = createHash('sha256')
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), hash)
  return hash.digest('hex')
}

/** Whether the file at `path` is a file of exactly `body`'s bytes (its size alone is not enough: a corrupt blob may have it). */
async function holds (path: string, body: Uint8Array): Promise<boolean> {
  const st = await stat(path).catch(() => undefined)
  if (st === undefined || !st.isFile() || st.size !== body.length) return false
  const bytes = await readFile(path).catch(() => undefined)
  return bytes !== undefined && bytes.equals(body)
}

/**
 * What a look at a blob found: good bytes; bytes that fail their hash (the only finding that
 * deletes a blob); no file there (or none usable: a directory, the wrong size); or nothing
 * known, because it could not be read.
 */
type BlobState = 'ok' | 'corrupt' | 'missing' | 'unreadable'

/** Hashes a blob against its name. A read that fails is 'unreadable', with its errno, unless the file is gone. */
async function hashBlob (path: string, outputHex: string): Promise<{ state: BlobState, code: string }> {
  try {
    return { state: await hashFile(path) === outputHex ? 'ok' : 'corrupt', code: '' }
  } catch (err) {
    return { state: isGone(err) ? 'missing' : 'unreadable', code: errno(err) }
  }
}

/** The path names nothing (or goes through something that is not a directory). */
function isGone (err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code
  return code === 'ENOENT' || code === 'ENOTDIR'
}

function errno (err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message
}

function writeTime (t: number): Uint8Array {
  const b = Buffer.allocUnsafe(8)
  b.writeDoubleBE(t)
  return b
}

function readTime (raw: Uint8Array): number {
  return raw.byteLength === 8 ? Buffer.from(raw.buffer, raw.byteOffset, 8).readDoubleBE(0) : 0
}

/**
 * Opens the index. One that LevelDB reports corrupt (a crash while it wrote can leave its
 * CURRENT or MANIFEST unreadable) is repaired, which rebuilds them from the tables and logs and
 * so keeps the entries. Anything else that keeps it shut (a full disk: LevelDB writes as it
 * opens; permissions) is GRID_ERR_CACHE_OPEN, and the index is left as it is: `grid build`
 * then runs without a node rather than fail.
 */
async function openIndex (cacheDir: string): Promise<Index> {
  const dir = join(cacheDir, INDEX_DIR)
  const open = async (): Promise<Index> => {
    const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
    try {
      await db.open()
      return db
    } catch (err) {
      if (levelCode(err) === 'LEVEL_LOCKED') {
        throw new GridError('GRID_ERR_CACHE_LOCKED', `the cache index in ${cacheDir} is held by another process`, {
          cause: err,
          hint: 'a grid daemon or another grid build owns this cache: use its socket (--control) or another --cache'
        })
      }
      throw err
    }
  }
  const cannotOpen = (err: unknown): GridError => new GridError('GRID_ERR_CACHE_OPEN', `the cache index in ${dir} cannot be opened: ${levelMessage(err)}`, {
    cause: err,
    hint: `if the disk is full, free some space on it; if the index is damaged, move ${dir} aside: the cache starts afresh (its blobs go at the next grid cache gc)`
  })
  try {
    return await open()
  } catch (err) {
    if (errorCode(err) === 'GRID_ERR_CACHE_LOCKED') throw err
    if (!levelMessage(err).startsWith('Corruption:')) throw cannotOpen(err)
    log.warn(`the cache index in ${dir} does not open (${levelMessage(err)}): repairing it`)
  }
  try {
    await (Level as unknown as Repairable).repair(dir)
    const db = await open()
    log.warn(`repaired the cache index in ${dir}`)
    return db
  } catch (err) {
    if (errorCode(err) === 'GRID_ERR_CACHE_LOCKED') throw err
    throw cannotOpen(err)
  }
}

type Index = Level<string, Uint8Array>

/** The key `heal` deletes to see whether the index takes writes (no sublevel's: none holds it). */
const HEAL_PROBE_KEY = 'heal-probe'
/** What `heal` writes beside the index to see whether its file system takes files again. */
const HEAL_PROBE_BYTES = 64 * 1024

interface OpenIndex { db: Index, entries: Sub, atimes: Sub, recallLists: Sub, recallTimes: Sub }

/** An open index with its sublevels, each open (until then a sublevel's getSync fails: LEVEL_DATABASE_NOT_OPEN). */
async function withSublevels (db: Index): Promise<OpenIndex> {
  const sub = (name: string): Sub => db.sublevel<string, Uint8Array>(name, { valueEncoding: 'view' }) as unknown as Sub
  const index = { db, entries: sub('e'), atimes: sub('a'), recallLists: sub('r'), recallTimes: sub('rt') }
  await Promise.all([index.entries, index.atimes, index.recallLists, index.recallTimes].map(async s => { await s.open() }))
  return index
}
/** On Node, `level`'s Level is classic-level's ClassicLevel, whose static repair its types omit. */
interface Repairable { repair: (location: string) => Promise<void> }

function levelCode (err: unknown): string | undefined {
  return (err as { cause?: { code?: string } }).cause?.code ?? (err as { code?: string }).code
}

/** LevelDB's own words ("Corruption: …") are in the cause of abstract-level's error. */
function levelMessage (err: unknown): string {
  return (err as { cause?: Error }).cause?.message ?? (err as Error).message
}
