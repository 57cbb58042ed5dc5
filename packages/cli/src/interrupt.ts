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

/**
 * The signals that go dying of makes grid die of too, once it has said what it has to
 * (`dieLikeGo`): those that stop a command (a terminal's Ctrl-C or hang-up, a supervisor's
 * SIGTERM), whose default action dumps no core. A shell tells a command that died of Ctrl-C from
 * one that exited 130: a script (`for d in a b; do grid build ./$d; done`) stops at the first,
 * and at the second goes on, as it would after a program that handled the Ctrl-C itself.
 */
const MIRRORED = new Set<string>(['SIGINT', 'SIGTERM', 'SIGHUP'])

let goSignal: NodeJS.Signals | undefined

/** go died of `signal` (build.ts): grid will too, as it exits. */
export function goDiedOf (signal: NodeJS.Signals): void {
  if (MIRRORED.has(signal)) goSignal = signal
}

/**
 * Dies of the signal go died of, if it did (its default action, nothing catching it any more);
 * returns false when go did not. Called last, once the summary is written (bin/grid.js).
 */
export function dieLikeGo (): boolean {
  if (goSignal === undefined) return false
  process.removeAllListeners(goSignal)
  process.kill(process.pid, goSignal)
  return true
}

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
