/**
 * Deadlines for operations that another signal (a node stopping, a requester gone) also cancels.
 *
 * Not `AbortSignal.any([AbortSignal.timeout(ms), stop])`, for two faults of Node 20 (measured on
 * 20.20):
 * * the timeout signal inside it is held only weakly: once the garbage collector has run, the
 *   composite never aborts (nodejs/node#57736, fixed in Node 24). A link probe of a peer that
 *   never answered waited on a read with such a deadline for good, in CI;
 * * each such signal leaves a record on `stop` that is never freed (~100 bytes each), and the
 *   mesh's stop signal lives as long as the daemon, which dials a bootstrap address that does not
 *   answer every 30 s for as long as it runs.
 * The timer here holds its controller strongly, and `done` takes everything off `stop`. A child
 * process's deadline is execFile's own `timeout` option.
 *
 * Not `AbortSignal.any([stop, own.signal])` either: that one aborts, but leaves the same record
 * on `stop` for as long as `stop` lives. `linked` is its replacement.
 *
 * A plain `AbortSignal.timeout(ms)` does fire once the garbage collector has run, as long as
 * whatever waits on it holds an abort listener on it meanwhile (libp2p's reads and writes do);
 * held otherwise (inside `AbortSignal.any`, say) it does not. Whether a use is safe rests on how
 * its consumer waits, so the sources use `deadline` instead (test/unit/signals.test.ts keeps
 * the two out).
 */

export interface Deadline {
  signal: AbortSignal
  /** Detaches the deadline from the other signal and clears its timer: call it when the operation is over. */
  done: () => void
}

/** A signal that aborts after `ms` (a TimeoutError) or when `stop` aborts. */
export function deadline (ms: number, stop?: AbortSignal): Deadline {
  const controller = new AbortController()
  const onStop = (): void => { controller.abort(stop?.reason) }
  const timer = setTimeout(() => { controller.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError')) }, ms)
  timer.unref()
  if (stop?.aborted === true) onStop()
  else stop?.addEventListener('abort', onStop, { once: true })
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer)
      stop?.removeEventListener('abort', onStop)
    }
  }
}

export interface Linked {
  signal: AbortSignal
  /** Aborts the signal (what still waits on it stops) and detaches it from the other signal. */
  end: () => void
}

/** A signal that aborts when `stop` aborts or `end` is called, whichever is first. */
export function linked (stop: AbortSignal): Linked {
  const controller = new AbortController()
  const onStop = (): void => { controller.abort(stop.reason) }
  if (stop.aborted) onStop()
  else stop.addEventListener('abort', onStop, { once: true })
  return {
    signal: controller.signal,
    end: () => {
      stop.removeEventListener('abort', onStop)
      controller.abort()
    }
  }
}
