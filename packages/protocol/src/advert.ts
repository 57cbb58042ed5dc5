/**
 * Adverts: what a node tells the mesh about itself on the gossip topic, on change and as a
 * heartbeat. They arrive from the wire, so `decodeAdvert` checks the size before decoding and
 * every field after; anything unexpected is refused with GRID_ERR_ADVERT_INVALID naming the
 * field, and the mesh drops the message and logs the sender.
 */
import { Packr } from './msgpack.js'
import { GridError } from './errors.js'
import { CONTROL_CHAR } from './constants.js'

export const ADVERT_VERSION = 1
/** A real advert is well under 2 KiB; anything over this cap is refused before decoding. */
export const MAX_ADVERT_BYTES = 16 * 1024
/** Addresses in an advert at most; a node remembers (peers.json) and dials no more of one member. */
export const MAX_ADVERT_ADDRS = 16
const MAX_ADDR_CHARS = 256
const MAX_TOOLCHAINS = 8
const MAX_TARGETS = 64
/** Compile slots an advert may offer at most: a daemon refuses more (--slots), as every member would its adverts. */
export const MAX_SLOTS = 1024
const MAX_PACKINGS = 8

export const POLICIES = ['always', 'idle', 'never'] as const
export type Policy = typeof POLICIES[number]

export interface ToolchainInfo {
  /** `go version` of the toolchain, e.g. go1.26.8 */
  go: string
  /** `go tool compile -V=full`, e.g. `compile version go1.26.8` */
  compiler: string
  /** sha256 (hex) of compiling a fixed tiny package with fixed args (DESIGN §4) */
  canary: string
  /** GOEXPERIMENT, '' for the default */
  experiment: string
}

export interface Advert {
  v: number
  peerId: string
  /** multiaddrs the node listens on, with /p2p/<id> */
  addrs: string[]
  /** grid version */
  version: string
  toolchains: ToolchainInfo[]
  /** GOOS/GOARCH pairs it compiles for; '*' is any (pure Go compiles anywhere) */
  targets: string[]
  slots: { total: number, free: number }
  /** 1-minute load average per core */
  load: number
  policy: Policy
  /** whether the node takes remote work right now (policy and load together) */
  accepting: boolean
  /** increases with every advert the node sends, and across its restarts (it starts at the start's unix ms) */
  seq: number
  /**
   * The packings (PACKING) its worker unpacks a compile task's inputs from: a requester on a
   * slow link sends them packed. Absent from members before it was added, which take inputs
   * only as they are.
   */
  unpacks?: string[]
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })

export function encodeAdvert (advert: Advert): Uint8Array {
  const bytes = packr.pack(advert)
  if (bytes.length > MAX_ADVERT_BYTES) throw new GridError('GRID_ERR_ADVERT_INVALID', `advert of ${bytes.length} bytes exceeds ${MAX_ADVERT_BYTES}`)
  return bytes
}

function invalid (field: string, from: string): GridError {
  return new GridError('GRID_ERR_ADVERT_INVALID', `advert from ${from}: bad ${field}`)
}

/**
 * A string of an advert: within its length, and with no control character. Members print these
 * (`grid peers`, their logs): a terminal escape sequence from one member must not reach another
 * member's terminal.
 */
const isStr = (v: unknown, max = 256): v is string => typeof v === 'string' && v.length <= max && !CONTROL_CHAR.test(v)
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0

function checkToolchain (t: unknown): t is ToolchainInfo {
  if (t === null || typeof t !== 'object' || Array.isArray(t)) return false
  const r = t as Record<string, unknown>
  return isStr(r.go, 64) && isStr(r.compiler, 256) && typeof r.canary === 'string' && /^[0-9a-f]{64}$/.test(r.canary) && isStr(r.experiment, 256)
}

/** Decodes and validates one advert from `from` (a PeerId string, for errors). */
export function decodeAdvert (bytes: Uint8Array, from = 'peer'): Advert {
  if (bytes.length > MAX_ADVERT_BYTES) throw new GridError('GRID_ERR_ADVERT_INVALID', `advert from ${from} is ${bytes.length} bytes, over the cap of ${MAX_ADVERT_BYTES}`)
  let value: unknown
  try {
    value = packr.unpack(bytes)
  } catch (err) {
    throw new GridError('GRID_ERR_ADVERT_INVALID', `advert from ${from} is not msgpack`, { cause: err })
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) throw invalid('shape (not a map)', from)
  const a = value as Record<string, unknown>
  if (a.v !== ADVERT_VERSION) throw invalid(`version ${String(a.v)}`, from)
  if (!isStr(a.peerId, 128) || a.peerId === '') throw invalid('peerId', from)
  if (!Array.isArray(a.addrs) || a.addrs.length > MAX_ADVERT_ADDRS || !a.addrs.every(x => isStr(x, MAX_ADDR_CHARS) && x.startsWith('/'))) throw invalid('addrs', from)
  if (!isStr(a.version, 64)) throw invalid('version', from)
  if (!Array.isArray(a.toolchains) || a.toolchains.length > MAX_TOOLCHAINS || !a.toolchains.every(checkToolchain)) throw invalid('toolchains', from)
  if (!Array.isArray(a.targets) || a.targets.length > MAX_TARGETS || !a.targets.every(x => isStr(x, 64) && /^(\*|[a-z0-9]+\/[a-z0-9]+)$/.test(x))) throw invalid('targets', from)
  const slots = a.slots as Record<string, unknown> | null
  if (slots === null || typeof slots !== 'object' || !isCount(slots.total) || !isCount(slots.free) || slots.total > MAX_SLOTS || slots.free > slots.total) throw invalid('slots', from)
  if (typeof a.load !== 'number' || !Number.isFinite(a.load) || a.load < 0 || a.load > 1e6) throw invalid('load', from)
  if (!(POLICIES as readonly unknown[]).includes(a.policy)) throw invalid('policy', from)
  if (typeof a.accepting !== 'boolean') throw invalid('accepting', from)
  if (!isCount(a.seq)) throw invalid('seq', from)
  if (a.unpacks !== undefined && !(Array.isArray(a.unpacks) && a.unpacks.length <= MAX_PACKINGS && a.unpacks.every(x => isStr(x, 16)))) throw invalid('unpacks', from)
  return {
    v: a.v,
    peerId: a.peerId,
    addrs: a.addrs,
    version: a.version,
    toolchains: a.toolchains.map(t => ({ go: t.go, compiler: t.compiler, canary: t.canary, experiment: t.experiment })),
    targets: a.targets,
    slots: { total: slots.total, free: slots.free },
    load: a.load,
    policy: a.policy as Policy,
    accepting: a.accepting,
    seq: a.seq,
    ...(a.unpacks === undefined ? {} : { unpacks: a.unpacks })
  }
}
