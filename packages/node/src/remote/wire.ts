/** Messages of the compile stream, length-prefixed msgpack; checked before use. */
import { GridError, PACKING, Packr } from '@grid/protocol'
import { MAX_COMPILE_MESSAGE_BYTES, MAX_REPORTED_COMPILE_MS } from './constants.js'

export const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })

export type CompileMessage =
  /**
   * `eager`: the inputs the requester expects the worker to lack follow the offer at once, as
   * `blobs`… and `done`; the worker answers `need` only if it still lacks some. `pack`: the
   * requester's probe found the link slow, and it asks for the archive packed (../pack.ts); a
   * packing this worker does not know (a later version's) gets the archive as it is.
   */
  | { type: 'offer', task: unknown, eager?: boolean, pack?: string }
  | { type: 'need', hashes: string[] }
  /** `packed`: the input is packed, for a worker whose advert says it unpacks inputs (../pack.ts). */
  | { type: 'blobs', items: Array<{ sha256: string, data: Uint8Array, packed?: typeof PACKING }> }
  | { type: 'done' }
  /**
   * `packed`: the archive is packed, as the offer asked (an earlier worker never packs), and
   * `archiveSize` its length unpacked (a worker of an earlier version packs without it): the
   * requester takes that much room before it unpacks, and the archive must come to exactly that.
   */
  | { type: 'result', exitCode: number, output: Uint8Array, archive: Uint8Array | null, asmhdr: Uint8Array | null, compileMs: number, packed?: typeof PACKING, archiveSize?: number }
  | { type: 'fail', code: string, message: string }

export function decodeCompileMessage (bytes: Uint8Array, from: string): CompileMessage {
  let m: Record<string, unknown>
  try { m = packr.unpack(bytes) as Record<string, unknown> } catch (err) {
    throw new GridError('GRID_ERR_MESSAGE_INVALID', `undecodable compile message from ${from}`, { cause: err })
  }
  const bad = (): GridError => new GridError('GRID_ERR_MESSAGE_INVALID', `malformed ${String(m?.type)} compile message from ${from}`)
  if (m === null || typeof m !== 'object') throw bad()
  switch (m.type) {
    case 'offer': if ((m.eager === undefined || typeof m.eager === 'boolean') && (m.pack === undefined || (typeof m.pack === 'string' && m.pack.length <= 16))) return m as CompileMessage; throw bad()
    case 'need': if (Array.isArray(m.hashes) && m.hashes.every(h => typeof h === 'string' && /^[0-9a-f]{64}$/.test(h))) return m as CompileMessage; throw bad()
    case 'blobs': if (Array.isArray(m.items) && m.items.every((i: any) => typeof i?.sha256 === 'string' && i.data instanceof Uint8Array && isPacking(i.packed))) return m as CompileMessage; throw bad()
    case 'done': return m as CompileMessage
    case 'result':
      if (Number.isSafeInteger(m.exitCode) && m.output instanceof Uint8Array && (m.archive === null || m.archive instanceof Uint8Array) &&
        (m.asmhdr === null || m.asmhdr instanceof Uint8Array) && isCompileMs(m.compileMs) && isPacking(m.packed) &&
        (m.packed === undefined || m.archive !== null) && (m.archiveSize === undefined || (m.packed !== undefined && isArchiveSize(m.archiveSize)))) return m as CompileMessage
      throw bad()
    case 'fail': if (typeof m.code === 'string' && typeof m.message === 'string') return m as CompileMessage; throw bad()
    default: throw bad()
  }
}

/** A result's or an input's packing: absent, or the one this node packs and unpacks. */
function isPacking (v: unknown): boolean {
  return v === undefined || v === PACKING
}

/** An archive's length unpacked: one the largest message could carry, as it is. */
function isArchiveSize (bytes: unknown): boolean {
  return Number.isSafeInteger(bytes) && (bytes as number) >= 0 && (bytes as number) <= MAX_COMPILE_MESSAGE_BYTES
}

/** A compile time a worker can have measured: finite, not negative, within its task deadline. */
function isCompileMs (ms: unknown): boolean {
  return typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 && ms <= MAX_REPORTED_COMPILE_MS
}
