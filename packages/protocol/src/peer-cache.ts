/**
 * The shared cache between peers (`/grid/cache/1.0.0`): one persistent stream per pair,
 * length-prefixed msgpack maps, requests multiplexed by `id`.
 *
 *   lookup {id, keys: bin(32)[]}          → found {id, entries: (Found | null)[]}  (same order)
 *   fetch  {id, outputId: bin(32), pack?} → chunk {id, data: bin, last: bool, packed?}*  (≤ 1 MiB each)
 *                                         | gone {id}
 *   any    → fail {id, code, message}
 *
 * A Claim says "ActionID maps to OutputID", signed by the node that produced it. The body is
 * verified by the receiver (sha256 = OutputID); the mapping is what `--trust` and `--verify`
 * are about. A Found is a Claim that may carry its body (`body`, when the body is at most
 * INLINE_BODY_BYTES, within INLINE_BUDGET_BYTES per reply), which saves the fetch's round trip
 * for the many small entries of a build; it is verified like a fetched one. It also carries the
 * entry's `age` (foundTime): `time` is by the answering node's wall clock, not the asker's. A
 * fetch over a link the asker's probe found slow asks for the body packed (`pack`: PACKING); the
 * chunks then carry the packed body, each saying so (`packed`), and an earlier version ignores
 * the ask and sends the body as it is. Every message is checked against the field table below
 * before use.
 */
import { CACHE_ID_BYTES, PACKING } from './constants.js'
import { GridError } from './errors.js'
import { checkField, isPlainObject, type Kind } from './messages.js'

/** Keys per lookup: a burst of cmd/go gets is batched, within this bound. */
export const MAX_LOOKUP_KEYS = 256
/** Body bytes per chunk: big enough to stream fast, small enough not to stall other replies. */
export const CHUNK_BYTES = 1024 * 1024
/** Largest peer-cache message: a chunk plus headroom, or a lookup reply of MAX_LOOKUP_KEYS claims. */
export const MAX_PEER_MESSAGE_BYTES = CHUNK_BYTES + 64 * 1024
/** Largest body a lookup reply carries inline (most of a build's entries are smaller). */
export const INLINE_BODY_BYTES = 16 * 1024
/** Inline bodies per lookup reply, in bytes: with MAX_LOOKUP_KEYS claims, within the message cap. */
export const INLINE_BUDGET_BYTES = 512 * 1024
/** Largest body a node fetches from a peer (cmd/go's biggest objects are tens of MB). */
export const MAX_BODY_BYTES = 1024 * 1024 * 1024

export interface Claim {
  actionId: Uint8Array
  outputId: Uint8Array
  size: number
  /** unix ms of the producer's put */
  time: number
  /** PeerId of the node that produced the entry */
  producer: string
  /** the producer's toolchain (`toolchainLabel`: `-V=full` and canary), part of what it signed */
  toolchain: string
  /** producer's Ed25519 signature over claimBytes(actionId, outputId, toolchain) */
  sig: Uint8Array
}

/**
 * A claim in a lookup reply, with its body when that is small (not signed: it must hash to
 * outputId), and `age`: how long ago the entry was put, in ms, by the clock of the node that
 * answers (whose `time` is by that same clock). Wall clocks of members differ; ages do not.
 */
export type Found = Claim & { body?: Uint8Array, age?: number }

/**
 * When a found entry was put, by this node's clock (`now`): its age subtracted from now, or, from
 * a node that sends no age, its time, never later than now. cmd/go takes this time as the
 * entry's, and ignores cached test results from before `go clean -testcache`: a time from a
 * producer whose clock runs two hours ahead kept a test result cached for two hours after it.
 */
export function foundTime (found: Found, now: number): number {
  return found.age === undefined ? Math.min(found.time, now) : Math.max(0, now - found.age)
}

type Id = { id: number }
export type PeerCacheMessage =
  | Id & { type: 'lookup', keys: Uint8Array[] }
  | Id & { type: 'found', entries: Array<Found | null> }
  | Id & { type: 'fetch', outputId: Uint8Array, pack?: string }
  | Id & { type: 'chunk', data: Uint8Array, last: boolean, packed?: typeof PACKING }
  | Id & { type: 'gone' }
  | Id & { type: 'fail', code: string, message: string }

const FIELDS: Record<PeerCacheMessage['type'], Record<string, Kind | 'bool' | 'keys' | 'claims'>> = {
  lookup: { keys: 'keys' },
  found: { entries: 'claims' },
  fetch: { outputId: 'id32' },
  chunk: { data: 'bin', last: 'bool' },
  gone: {},
  fail: { code: 'str', message: 'str' }
}

/** Optional fields: a packing asked for (one this node does not know gets the body as it is), and a packing said. */
const OPTIONAL: Partial<Record<PeerCacheMessage['type'], [string, (v: unknown) => boolean]>> = {
  fetch: ['pack', v => v === undefined || (typeof v === 'string' && v.length <= 16)],
  chunk: ['packed', v => v === undefined || v === PACKING]
}

const CLAIM: Record<keyof Claim, Kind> = { actionId: 'id32', outputId: 'id32', size: 'uint', time: 'uint', producer: 'str', toolchain: 'str', sig: 'bin' }

function isClaim (v: unknown): v is Claim {
  if (!isPlainObject(v)) return false
  for (const [k, kind] of Object.entries(CLAIM)) if (!checkField(v[k], kind)) return false
  const c = v as unknown as Claim
  return c.size <= MAX_BODY_BYTES && c.producer.length <= 128 && c.toolchain.length <= 256 && c.sig.length <= 128
}

function isFound (v: unknown): v is Found {
  if (!isClaim(v)) return false
  const { body, age } = v as Found
  return (body === undefined || (body instanceof Uint8Array && body.length === v.size && body.length <= INLINE_BODY_BYTES)) && (age === undefined || checkField(age, 'uint'))
}

export function validatePeerCacheMessage (value: unknown, from: string): PeerCacheMessage {
  if (!isPlainObject(value) || typeof value.type !== 'string' || !Object.hasOwn(FIELDS, value.type)) {
    throw new GridError('GRID_ERR_MESSAGE_INVALID', `peer ${from} sent an unknown cache message`)
  }
  if (!checkField(value.id, 'uint')) throw new GridError('GRID_ERR_MESSAGE_INVALID', `peer ${from} sent a cache message without a valid id`)
  for (const [name, kind] of Object.entries(FIELDS[value.type as PeerCacheMessage['type']])) {
    const v = value[name]
    const ok = kind === 'bool'
      ? typeof v === 'boolean'
      : kind === 'keys'
        ? Array.isArray(v) && v.length <= MAX_LOOKUP_KEYS && v.every(k => k instanceof Uint8Array && k.length === CACHE_ID_BYTES)
        : kind === 'claims'
          ? Array.isArray(v) && v.length <= MAX_LOOKUP_KEYS && v.every(c => c === null || isFound(c)) &&
            v.reduce((n: number, c: Found | null) => n + (c?.body?.length ?? 0), 0) <= INLINE_BUDGET_BYTES
          : checkField(v, kind)
    if (!ok) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${value.type} from peer ${from}: bad field ${name}`)
  }
  const optional = OPTIONAL[value.type as PeerCacheMessage['type']]
  if (optional !== undefined && !optional[1](value[optional[0]])) {
    throw new GridError('GRID_ERR_MESSAGE_INVALID', `${value.type} from peer ${from}: bad field ${optional[0]}`)
  }
  return value as unknown as PeerCacheMessage
}

/**
 * The toolchain a node's claims name (`Claim.toolchain`): the compiler's `-V=full` and its
 * canary (DESIGN §4). cmd/go's ActionIDs tell releases apart but not two compilers of one
 * release (a rebuilt compiler prints the same `-V=full`): a node takes a peer's entry only when
 * the claim names its own toolchain. At most 256 characters, as claims allow.
 */
export function toolchainLabel (t: { compiler: string, canary: string }): string {
  const label = `${t.compiler} canary ${t.canary.slice(0, 16)}`
  return label.length <= 256 ? label : `${t.compiler.slice(0, 200)}… canary ${t.canary.slice(0, 16)}`
}

/** The bytes a producer signs: one labelled line per part, so nothing can be shifted between parts. */
export function claimBytes (actionId: Uint8Array, outputId: Uint8Array, toolchain: string): Uint8Array {
  return Buffer.concat([
    Buffer.from('grid cache claim v1\naction '), Buffer.from(actionId),
    Buffer.from('\noutput '), Buffer.from(outputId),
    Buffer.from(`\ntoolchain ${toolchain}\n`)
  ])
}
