/**
 * Loaded with `node --import` (NODE_OPTIONS) into a process whose wall clock is to be off by
 * GRID_TEST_CLOCK_SHIFT_MS: Date.now() and `new Date()` are shifted, as on a workstation whose
 * clock is wrong. Timers and performance.now() are not (they are monotonic, as on that machine).
 */
const shift = Number(process.env.GRID_TEST_CLOCK_SHIFT_MS ?? 0)
const RealDate = Date
const realNow = RealDate.now.bind(RealDate)

class ShiftedDate extends RealDate {
  constructor (...args: unknown[]) {
    if (args.length === 0) super(realNow() + shift)
    else super(...(args as [string | number | Date]))
  }

  static override now (): number { return realNow() + shift }
}

globalThis.Date = ShiftedDate as DateConstructor
export {}
