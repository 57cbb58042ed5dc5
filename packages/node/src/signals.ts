/** Deadlines for operations that a long-lived signal (a node stopping) also cancels. */

export interface Deadline {
  signal: AbortSignal
  /** Detaches the deadline from the long-lived signal and clears its timer: call it when the operation is over. */
  done: () => void
}

/**
 * A signal that aborts after `ms` (a TimeoutError) or when `stop` aborts. Not
 * `AbortSignal.any([AbortSignal.timeout(ms), stop])`: on Node 20 each such signal leaves a
 * record on `stop` that is never freed (~100 bytes each, measured on 20.20), and the mesh's
 * stop signal lives as long as the daemon, which dials a bootstrap address that does not
 * answer every 30 s for as long as it runs.
 */
export function deadline (ms: number, stop: AbortSignal): Deadline {
  const controller = new AbortController()
  const onStop = (): void => { controller.abort(stop.reason) }
  const timer = setTimeout(() => { controller.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError')) }, ms)
  timer.unref()
  if (stop.aborted) onStop()
  else stop.addEventListener('abort', onStop, { once: true })
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer)
      stop.removeEventListener('abort', onStop)
    }
  }
}
