/**
 * Ctrl-C and SIGTERM before grid starts go. Once go runs they are go's (build.ts goExit): Ctrl-C
 * reaches it directly (a terminal signals the whole process group), a SIGTERM to grid is
 * passed on. Before that, they stop grid's own steps: the shim's build after an upgrade
 * (seconds: a go build in a temp dir of its own, which a SIGTERM to grid alone would leave
 * running) or an embedded node's start. Those steps are cancelled and tidy up after themselves,
 * and then grid dies of the signal, as go would have.
 */
import { constants as osConstants } from 'node:os'

const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const

export class BeforeGo {
  private readonly controller = new AbortController()
  private caught: NodeJS.Signals | undefined
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.caught ??= signal
    this.controller.abort()
    // A step that does not heed the abort (a go env on a hung file system) must not make grid
    // unkillable: a second Ctrl-C gets the default action, at once.
    this.release()
  }

  private release (): void {
    for (const signal of STOP_SIGNALS) process.off(signal, this.onSignal)
  }

  constructor () {
    for (const signal of STOP_SIGNALS) process.on(signal, this.onSignal)
  }

  /** Aborts on SIGINT or SIGTERM: for the steps to cancel. */
  get signal (): AbortSignal { return this.controller.signal }

  /**
   * Stops catching the signals. When one came, `undo` releases what the steps made all the same
   * (an embedded node), and this process dies of the signal (its default action, now that
   * nothing catches it); the exit status a shell would report is returned in case it lingers.
   */
  async end (undo: () => Promise<void> = async () => {}): Promise<number | undefined> {
    this.release()
    if (this.caught === undefined) return undefined
    await undo().catch(() => {})
    process.kill(process.pid, this.caught)
    return 128 + (osConstants.signals[this.caught] ?? 0)
  }
}
