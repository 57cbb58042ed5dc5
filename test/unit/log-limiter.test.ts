// LogLimiter (packages/node/src/log.ts): a warning anyone can repeat at will (a refused handshake
// per connection attempt) is logged once per key, then told as a count once per interval, with
// a bounded number of keys. A fake clock; no sleeps.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import type * as LogModule from '../../packages/node/src/log.js'
import { ROOT } from '../helpers/index.js'

// Internal to @grid/node (not in its package exports): loaded from its build.
const { LogLimiter } = await import(pathToFileURL(join(ROOT, 'packages/node/dist/log.js')).href) as typeof LogModule

const MINUTE = 60_000

function limiter (maxKeys = 8): { warn: (key: string, msg: string) => void, sweep: () => void, flush: () => void, lines: string[], debug: string[], clock: { now: number } } {
  const lines: string[] = []
  const debug: string[] = []
  const clock = { now: 1_000_000 }
  const l = new LogLimiter({
    log: { warn: msg => lines.push(msg), debug: msg => debug.push(msg) },
    intervalMs: MINUTE,
    maxKeys,
    summary: (key, count, seconds) => `… and ${count} more from ${key ?? 'other addresses'} in the last ${seconds} s`,
    now: () => clock.now
  })
  return { warn: (key, msg) => l.warn(key, msg), sweep: () => l.sweep(), flush: () => l.flush(), lines, debug, clock }
}

describe('log limiter', () => {
  it('a flood of 100 refused handshakes a second from one address writes a line a minute, not 100 a second (the log flood)', () => {
    const l = limiter()
    for (let i = 0; i < 100 * 600; i++) { // 10 minutes
      l.clock.now += 10
      l.warn('10.0.0.9', `refused #${i}`)
      if (i % 500 === 0) l.sweep() // the mesh's heartbeat: every 5 s
    }
    assert.equal(l.lines[0], 'refused #0', 'the first is logged in full')
    assert.ok(l.lines.length <= 11, `${l.lines.length} lines`)
    assert.match(l.lines[1] ?? '', /^… and 5999 more from 10\.0\.0\.9 in the last 60 s$/)
    assert.equal(l.debug.length, 100 * 600 - 1, 'each repeat still at debug level')
    l.flush()
    const told = l.lines.slice(1).reduce((sum, line) => sum + Number(/and (\d+) more/.exec(line)?.[1]), 0)
    assert.equal(told, 100 * 600 - 1, 'every repeat is counted in some line')
  })

  it('tells the repeats at the next repeat or sweep after the interval, then forgets a key gone quiet', () => {
    const l = limiter()
    l.warn('a', 'a first')
    l.warn('b', 'b first')
    l.clock.now += 1_000
    l.warn('a', 'a again')
    l.warn('a', 'a again')
    assert.deepEqual(l.lines, ['a first', 'b first'])
    l.clock.now += MINUTE
    l.warn('a', 'a once more') // the interval is over: told, and this one begins the next count
    assert.deepEqual(l.lines.slice(2), ['… and 2 more from a in the last 61 s'])
    l.sweep() // b had no repeat: forgotten, nothing said
    assert.equal(l.lines.length, 3)
    l.clock.now += MINUTE
    l.sweep()
    assert.deepEqual(l.lines.slice(3), ['… and 1 more from a in the last 60 s'])
    l.clock.now += MINUTE
    l.sweep() // a quiet for an interval: forgotten
    l.warn('a', 'a after a quiet minute')
    l.warn('b', 'b after a quiet while')
    assert.deepEqual(l.lines.slice(4), ['a after a quiet minute', 'b after a quiet while'])
  })

  it('remembers at most maxKeys keys: the repeats of more keys at once are counted together, and the oldest go once their interval is over', () => {
    const l = limiter(3)
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 1000; i++) l.warn(`10.0.${i >> 8}.${i & 0xff}`, `from ${i}`)
    }
    assert.deepEqual(l.lines, ['from 0', 'from 1', 'from 2'], 'no line for each key past the first 3')
    l.clock.now += MINUTE
    l.sweep()
    assert.deepEqual(l.lines.slice(3), [
      '… and 4 more from 10.0.0.0 in the last 60 s',
      '… and 4 more from 10.0.0.1 in the last 60 s',
      '… and 4 more from 10.0.0.2 in the last 60 s',
      '… and 4985 more from other addresses in the last 60 s'
    ])
    l.clock.now += MINUTE
    l.sweep() // all quiet: forgotten, room for others
    l.warn('10.9.9.9', 'a new one')
    assert.equal(l.lines.at(-1), 'a new one')
  })

  it('flush tells what is not yet told, as the mesh stops', () => {
    const l = limiter()
    l.warn('a', 'a first')
    l.clock.now += 5_000
    l.warn('a', 'a again')
    l.flush()
    assert.deepEqual(l.lines, ['a first', '… and 1 more from a in the last 5 s'])
    l.warn('a', 'a after')
    assert.equal(l.lines.at(-1), 'a after')
  })
})
