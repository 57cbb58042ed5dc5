// The test helpers' own clean-up order: what every e2e test relies on to leave no daemon behind.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { defer } from '../helpers/index.js'

describe('defer', () => {
  it('runs clean-ups last first, runs every one when some throw, and reports the failures', async () => {
    const hooks: Array<() => unknown> = []
    const t = { after: (fn: () => unknown) => { hooks.push(fn) } }
    const ran: string[] = []
    defer(t, () => { ran.push('kill a') })
    defer(t, () => { ran.push('rm dir'); throw new Error('ENOTEMPTY') })
    defer(t, async () => { ran.push('kill b') })
    assert.equal(hooks.length, 1, 'one node:test hook per context')
    await assert.rejects(async () => { await hooks[0]?.() }, /ENOTEMPTY/)
    assert.deepEqual(ran, ['kill b', 'rm dir', 'kill a'])

    const two: Array<() => unknown> = []
    const u = { after: (fn: () => unknown) => { two.push(fn) } }
    defer(u, () => { throw new Error('one') })
    defer(u, () => { throw new Error('two') })
    await assert.rejects(async () => { await two[0]?.() }, (err: unknown) => err instanceof AggregateError && err.errors.length === 2)
  })
})
