/**
 * Compiles waiting for a place (a local slot, a peer slot), served by rank: highest first,
 * first come first served among equals. A rank may be a function, read each time a place is
 * given out rather than once on arrival: a compile that began waiting before its build's
 * package graph arrived (`grid build` lists it beside the build) is then served by the graph's
 * rank as soon as it is there. Ranked by expected time alone, small leaves wait last; in lab
 * builds whose first compiles came before the graph, the action of `internal/asan`, a leaf that
 * `runtime` imports, took 3.8 s behind other leaves while everything after waited on `runtime`.
 */

export type Rank = number | (() => number)

const valueOf = (rank: Rank): number => typeof rank === 'number' ? rank : rank()

export class RankedQueue<T> {
  private readonly items: Array<{ item: T, rank: Rank }> = []

  get size (): number { return this.items.length }

  push (item: T, rank: Rank): void {
    this.items.push({ item, rank })
  }

  /** Takes `item` out of the queue; false if it was not (or no longer) waiting. */
  remove (item: T): boolean {
    const i = this.items.findIndex(e => e.item === item)
    if (i < 0) return false
    this.items.splice(i, 1)
    return true
  }

  /** Takes out and returns the highest-ranked item, the earliest among equals. */
  shift (): T | undefined {
    let best = -1
    let bestRank = -Infinity
    for (let i = 0; i < this.items.length; i++) {
      const r = valueOf((this.items[i] as { rank: Rank }).rank)
      if (best < 0 || r > bestRank) { best = i; bestRank = r }
    }
    if (best < 0) return undefined
    return (this.items.splice(best, 1)[0] as { item: T }).item
  }
}
