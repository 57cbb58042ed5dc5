// Deadlines (packages/node/src/signals.ts) that another signal also cancels: they must fire
// whatever the garbage collector does, and a daemon dials for as long as it runs, so each dial
// must leave nothing behind on the mesh's stop signal. So must a signal linked to another
// (AbortSignal.any without its record on the other).
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { relative } from 'node:path'
import { describe, it } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { deadline, linked } from '@grid/node/server'
import { ROOT, packageSources } from '../helpers/index.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** The heap in use once whatever can be collected has been. */
async function heapUsed (): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc()
    await new Promise(resolve => setImmediate(resolve))
  }
  return process.memoryUsage().heapUsed
}

describe('deadline', () => {
  it('aborts when its time is up, or when the long-lived signal does', async () => {
    const stop = new AbortController()
    const timed = deadline(20, stop.signal)
    const alive = setTimeout(() => {}, 5_000) // its timer does not hold the process open
    await new Promise(resolve => timed.signal.addEventListener('abort', resolve, { once: true }))
    clearTimeout(alive)
    assert.equal((timed.signal.reason as Error).name, 'TimeoutError')
    timed.done()
    const stopped = deadline(60_000, stop.signal)
    stop.abort(new Error('node stopping'))
    assert.equal(stopped.signal.aborted, true)
    assert.equal((stopped.signal.reason as Error).message, 'node stopping')
    stopped.done()
    assert.equal(deadline(60_000, stop.signal).signal.aborted, true, 'a deadline on a stopped node is over at once')
  })

  it('aborts when its time is up even after the garbage collector has run (AbortSignal.any with a timeout does not on Node 20), with or without another signal', async () => {
    for (const stop of [new AbortController().signal, undefined]) {
      const timed = deadline(100, stop)
      const aborted = new Promise<string>(resolve => timed.signal.addEventListener('abort', () => { resolve('aborted') }, { once: true }))
      await new Promise(resolve => setTimeout(resolve, 20))
      gc()
      const waited = await Promise.race([aborted, new Promise<string>(resolve => setTimeout(() => { resolve('never aborted') }, 2_000))])
      assert.equal(waited, 'aborted')
      timed.done()
    }
  })

  it('is the only deadline in the sources: no AbortSignal.timeout or AbortSignal.any but where a comment says why it is safe', async () => {
    // Whether either is safe on Node 20 rests on how its consumer waits (signals.ts): a line
    // that uses one carries `abort-signal-ok: <why>`, on it or on the line above.
    const offenders: string[] = []
    for (const file of await packageSources()) {
      if (!file.endsWith('.ts')) continue
      const lines = (await readFile(file, 'utf8')).split('\n')
      lines.forEach((line, i) => {
        if (/^\s*(\*|\/\/|\/\*)/.test(line) || !/AbortSignal\s*\.\s*(any|timeout)\s*\(/.test(line)) return // comments may name them
        if (![line, lines[i - 1] ?? ''].some(l => /abort-signal-ok: \S/.test(l))) offenders.push(`${relative(ROOT, file)}:${i + 1}: ${line.trim()}`)
      })
    }
    assert.deepEqual(offenders, [], 'use deadline() or linked() from packages/node/src/signals.ts (a child process: execFile\'s timeout option)')
  })

  it('leaves nothing on the long-lived signal once done: a daemon redials a dead bootstrap address every 30 s for weeks', async () => {
    const stop = new AbortController()
    const before = await heapUsed()
    // AbortSignal.any([AbortSignal.timeout(ms), stop.signal]) kept ~100 bytes on stop.signal for
    // each, for good (Node 20): ~10 MB for these
    for (let i = 0; i < 100_000; i++) deadline(5_000, stop.signal).done()
    const grown = (await heapUsed()) - before
    assert.ok(grown < 2_000_000, `the heap grew by ${grown} bytes over 100,000 deadlines`)
    assert.equal(stop.signal.aborted, false)
  })
})

describe('linked', () => {
  it('aborts when the other signal does, with its reason, even after the garbage collector has run; or when ended', async () => {
    const stop = new AbortController()
    const link = linked(stop.signal)
    const aborted = new Promise<unknown>(resolve => link.signal.addEventListener('abort', () => { resolve(link.signal.reason) }, { once: true }))
    await new Promise(resolve => setImmediate(resolve))
    gc()
    stop.abort(new Error('connection closed'))
    assert.equal(((await aborted) as Error).message, 'connection closed')
    link.end()
    assert.equal(linked(stop.signal).signal.aborted, true, 'linked to an aborted signal, it is aborted at once')
    const ended = linked(new AbortController().signal)
    ended.end()
    assert.equal((ended.signal.reason as Error).name, 'AbortError')
  })

  it('leaves nothing on the other signal once ended (AbortSignal.any([other, own]) leaves ~100 bytes each on Node 20)', async () => {
    const stop = new AbortController()
    const before = await heapUsed()
    for (let i = 0; i < 100_000; i++) linked(stop.signal).end()
    const grown = (await heapUsed()) - before
    assert.ok(grown < 2_000_000, `the heap grew by ${grown} bytes over 100,000 linked signals`)
    assert.equal(stop.signal.aborted, false)
  })
})
