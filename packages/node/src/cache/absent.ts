/**
 * A Bloom filter of the ActionIDs in the index, for the cache helper (docs/cache.md, "Absent
 * entries"; the layout is ABSENT_PROBES's in @grid/protocol, and the helper's absent.go reads
 * it). Bits are only ever set: a filter handed out may gain bits while it is being sent, never
 * lose one, so it never rules out an entry that was in the index when it was handed out.
 */
import { ABSENT_BITS_PER_ENTRY, ABSENT_PROBES, CACHE_ID_BYTES, MAX_ABSENT_BYTES } from '@grid/protocol'

/** The smallest filter: 8 KiB, room for 4,096 entries. */
const MIN_ABSENT_BYTES = 8192

export class AbsentFilter {
  readonly bits: Uint8Array
  private readonly mask: number
  /** ActionIDs added, counting repeats: an upper bound on the entries it holds */
  private added = 0

  /** A filter with room for `entries` at ABSENT_BITS_PER_ENTRY bits each. */
  constructor (entries: number) {
    let bytes = MIN_ABSENT_BYTES
    while (bytes < MAX_ABSENT_BYTES && bytes * 8 < entries * ABSENT_BITS_PER_ENTRY) bytes *= 2
    this.bits = new Uint8Array(bytes)
    this.mask = bytes * 8 - 1
  }

  add (actionId: Uint8Array): void {
    const id = new DataView(actionId.buffer, actionId.byteOffset, CACHE_ID_BYTES)
    for (let i = 0; i < ABSENT_PROBES; i++) {
      const bit = (id.getUint32(4 * i) & this.mask) >>> 0
      this.bits[bit >>> 3] = (this.bits[bit >>> 3] ?? 0) | (1 << (bit & 7))
    }
    this.added++
  }

  mayHold (actionId: Uint8Array): boolean {
    const id = new DataView(actionId.buffer, actionId.byteOffset, CACHE_ID_BYTES)
    for (let i = 0; i < ABSENT_PROBES; i++) {
      const bit = (id.getUint32(4 * i) & this.mask) >>> 0
      if (((this.bits[bit >>> 3] ?? 0) & (1 << (bit & 7))) === 0) return false
    }
    return true
  }

  /** More entries than it was sized for (its false "maybe"s pass ~2 %): time for a bigger one. */
  get crowded (): boolean {
    return this.added * ABSENT_BITS_PER_ENTRY > this.bits.length * 8 * 2 && this.bits.length < MAX_ABSENT_BYTES
  }
}

