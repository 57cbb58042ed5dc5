/**
 * How long a build waited on something, both ways: the waits' sum, and the wall time during which
 * at least one of them was outstanding (the union of their intervals). cmd/go looks up many cache
 * entries at once, so a build's gets on peers overlap: their sum counts twice a stretch two of
 * them shared, and can pass the length of the build itself.
 *
 * A wait's length, the sum and the union are taken from the same clock readings: with no two
 * waits at once, the union is the sum; with some, it is less, and never less than the longest.
 */

/** One wait: `elapsed` reads its length so far; `end` ends it and returns its length (again: the same). */
export interface Wait {
  elapsed: () => number
  end: () => number
}

export class Waits {
  /** waits begun and not yet ended */
  private open = 0
  /** the sum of their start times (performance.now()): with `open`, their length so far */
  private openStarts = 0
  /** when the current stretch of outstanding waits began */
  private since = 0
  /** ms of the waits that have ended, and of the stretches that have */
  private endedSum = 0
  private endedUnion = 0

  begin (): Wait {
    const started = performance.now()
    if (this.open++ === 0) this.since = started
    this.openStarts += started
    let ms: number | undefined
    return {
      elapsed: () => ms ?? performance.now() - started,
      end: () => {
        if (ms !== undefined) return ms
        const now = performance.now()
        ms = now - started
        this.endedSum += ms
        this.openStarts -= started
        if (--this.open === 0) {
          this.endedUnion += now - this.since
          this.openStarts = 0 // no float residue carried into the next stretch
        }
        return ms
      }
    }
  }

  /** The waits' lengths added up, in ms; those still outstanding up to now. */
  sumMs (now = performance.now()): number {
    return this.endedSum + (this.open > 0 ? this.open * now - this.openStarts : 0)
  }

  /** The wall time in ms during which at least one wait was outstanding, up to now. */
  unionMs (now = performance.now()): number {
    return this.endedUnion + (this.open > 0 ? now - this.since : 0)
  }
}
