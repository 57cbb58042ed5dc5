/**
 * How many slots of each peer are free for our next task, from its last advert and our own
 * tasks there.
 *
 * A peer re-advertises its free slots at most once a second (ADVERT_SLOTS_MS), so its last
 * advert often counts a task of ours that has already ended. Taking such an advert's "no slot
 * free" at its word, once we have nothing there, leaves the peer idle until it advertises
 * again: in the lab (cold std, three 1-slot helpers) that idled a helper for about a second
 * after one task in eight, ~28 s of helper time per build. So the busy slots of an advert are
 * split into ours and other requesters': ours are the tasks we had on the peer when the advert
 * arrived, and only the others' are taken from the advert. Our own are counted live.
 *
 * An advert published just before one of our tasks ended can be read just after we saw the
 * result (gossip is validated on its own path): tasks that ended less than ADVERT_LAG_MS
 * before an advert arrived still count as ours in it.
 *
 * The rest is bounded by the peer's total, and by MAX_TASKS_PER_PEER (the compile streams one
 * connection carries): an advert's count is never taken unchecked. An estimate that is too high
 * costs a refusal as busy; one that is too low leaves a slot idle until the next advert.
 *
 * After a refusal as busy the peer counts as full until its next advert (at most BUSY_HOLD_MS):
 * what we believed of its slots was wrong, and offering again before the peer says otherwise
 * only gets the same answer. Without this, a peer that advertised free slots and refused every
 * offer drew the same compiles back to it in a loop (2,800 offers for ~20 compiles in one
 * build). `refused` tells whether a refusal is the first since the peer's last advert: one that
 * contradicts what the peer advertised (remote.ts sets aside a peer that does so repeatedly).
 */
import { MAX_TASKS_PER_PEER } from './constants.js'

/** A task of ours that ended this recently may still be counted busy in an advert that arrives. */
export const ADVERT_LAG_MS = 100

/**
 * Longest a refusal as busy keeps a peer full when no advert of it arrives. A peer advertises a
 * change of its free slots within a second (ADVERT_SLOTS_MS) and re-advertises every 5 s even
 * without one (HEARTBEAT_MS): the cap matters only when adverts are lost.
 */
export const BUSY_HOLD_MS = 5_000

interface Seen {
  mine: number
  endedAt: number
  mineBeforeEnd: number
  mineInAdvert: number
  /** adverts of the peer seen so far */
  adverts: number
  /** when it last refused us as busy, and how many of its adverts we had seen then */
  refusedAt: number
  refusedAfter: number
}

export class PeerSlots {
  private readonly peers = new Map<string, Seen>()
  private readonly now: () => number

  constructor (now: () => number = () => performance.now()) {
    this.now = now
  }

  /** Our tasks on `peer` now. */
  mine (peer: string): number {
    return this.peers.get(peer)?.mine ?? 0
  }

  started (peer: string): void {
    this.seen(peer).mine++
  }

  /** One of our tasks on `peer` ended; `hadSlot`: it had a slot there (false: refused as busy). */
  ended (peer: string, hadSlot = true): void {
    const s = this.seen(peer)
    if (hadSlot) {
      s.mineBeforeEnd = s.mine
      s.endedAt = this.now()
    }
    s.mine = Math.max(0, s.mine - 1)
  }

  /** An advert from `peer` arrived: the busy slots it shows include the tasks we have there now. */
  advertised (peer: string): void {
    const s = this.seen(peer)
    s.mineInAdvert = this.now() - s.endedAt < ADVERT_LAG_MS ? Math.max(s.mine, s.mineBeforeEnd) : s.mine
    s.adverts++
  }

  /**
   * `peer` refused one of our tasks as busy: it counts as full until its next advert (at most
   * BUSY_HOLD_MS). Returns whether this is the first refusal since then: true when it
   * contradicts the peer's last advert, false for more refusals of the same moment (our other
   * tasks offered there at once).
   */
  refused (peer: string): boolean {
    const first = !this.held(peer)
    const s = this.seen(peer)
    s.refusedAt = this.now()
    s.refusedAfter = s.adverts
    return first
  }

  /** Whether `peer` refused us as busy since its last advert (and not too long ago). */
  held (peer: string): boolean {
    const s = this.peers.get(peer)
    return s !== undefined && s.refusedAfter === s.adverts && this.now() - s.refusedAt < BUSY_HOLD_MS
  }

  /** Slots of `peer` free for our next task, given its last advert's slots. */
  free (peer: string, slots: { total: number, free: number }): number {
    if (this.held(peer)) return 0
    const s = this.peers.get(peer)
    const others = Math.max(0, slots.total - slots.free - (s?.mineInAdvert ?? 0))
    return Math.max(0, Math.min(slots.total - others, MAX_TASKS_PER_PEER) - (s?.mine ?? 0))
  }

  /** Forgets `peer` (it left the mesh), unless one of our tasks is still there. */
  forget (peer: string): void {
    if (this.mine(peer) === 0) this.peers.delete(peer)
  }

  private seen (peer: string): Seen {
    let s = this.peers.get(peer)
    if (s === undefined) { s = { mine: 0, endedAt: -Infinity, mineBeforeEnd: 0, mineInAdvert: 0, adverts: 0, refusedAt: -Infinity, refusedAfter: -1 }; this.peers.set(peer, s) }
    return s
  }
}
