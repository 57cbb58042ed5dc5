/**
 * The workstation's own load, which `--accept-remote idle` judges and adverts carry: the
 * kernel's 1-minute load average less what this node's compiles for peers add to it, per core.
 *
 * The kernel counts every runnable process, the compilers a worker runs for peers among them.
 * Counted in, a helper whose slots the mesh keeps full (one compile per slot, one slot per core
 * by default) would see its load pass 0.5 per core ~40 s into the work and stop taking any,
 * take it again once the average had decayed, and so give the mesh about half its cores on a
 * long build while its owner does nothing. The peers' part is averaged the way the kernel
 * averages (a sample every LOAD_SAMPLE_MS, the 1-minute decay), so that the two rise and fall
 * together; each compile counts as one runnable process (with every slot taken, each runs with
 * one backend thread).
 */
import { loadavg } from 'node:os'
import { LOAD_SAMPLE_MS, LOAD_WINDOW_MS } from './constants.js'

export interface OwnLoadInit {
  cores: number
  /** compiles this node is running for peers now */
  peerCompiles: () => number
  /** the 1-minute load average (the kernel's; a test's own) */
  loadavg?: () => number
}

export class OwnLoad {
  private readonly init: OwnLoadInit
  private peers = 0
  private timer: NodeJS.Timeout | undefined

  constructor (init: OwnLoadInit) {
    this.init = init
  }

  /** Samples every LOAD_SAMPLE_MS until stop; the timer keeps no process alive. */
  start (): void {
    if (this.timer !== undefined) return
    this.timer = setInterval(() => { this.sample() }, LOAD_SAMPLE_MS)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** One step of the average, as the kernel's calc_load takes every LOAD_SAMPLE_MS. */
  sample (): void {
    const decay = Math.exp(-LOAD_SAMPLE_MS / LOAD_WINDOW_MS)
    this.peers = this.peers * decay + this.init.peerCompiles() * (1 - decay)
  }

  /** The peers' compiles as the load average sees them now. */
  get peerLoad (): number {
    return this.peers
  }

  /** The load average per core, less the peers' compiles; never below 0. */
  perCore (): number {
    const total = this.init.loadavg?.() ?? loadavg()[0] ?? 0
    return Math.max(0, total - this.peers) / Math.max(1, this.init.cores)
  }
}
