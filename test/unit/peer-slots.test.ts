// A peer's free slots for our next task: its last advert, corrected for our own tasks there
// (an advert can lag a second behind them).
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ADVERT_LAG_MS, PeerSlots } from '@grid/node/server'

// not exported by @grid/node/server: from the built package
const { BUSY_HOLD_MS } = await import(new URL('../../../packages/node/dist/remote/peer-slots.js', import.meta.url).href) as typeof import('../../packages/node/src/remote/peer-slots.js')
const { MAX_TASKS_PER_PEER } = await import(new URL('../../../packages/node/dist/remote/constants.js', import.meta.url).href) as typeof import('../../packages/node/src/remote/constants.js')

const ONE = { total: 1, free: 1 }
const ONE_BUSY = { total: 1, free: 0 }

describe('PeerSlots', () => {
  it('a busy slot in an advert that arrived while our task ran is free again once the task ends', () => {
    let now = 0
    const slots = new PeerSlots(() => now)
    slots.advertised('p') // joined: idle
    assert.equal(slots.free('p', ONE), 1)
    slots.started('p')
    assert.equal(slots.free('p', ONE), 0, 'our task holds the only slot')
    now = 500
    slots.advertised('p') // the advert shows our task
    assert.equal(slots.free('p', ONE_BUSY), 0)
    now = 800
    slots.ended('p')
    assert.equal(slots.free('p', ONE_BUSY), 1, 'the advert is a second old, the slot was ours')
  })

  it('a slot another requester holds stays taken', () => {
    let now = 0
    const slots = new PeerSlots(() => now)
    slots.advertised('p') // busy with someone else's task: we have none there
    assert.equal(slots.free('p', ONE_BUSY), 0)
    assert.equal(slots.free('p', { total: 4, free: 1 }), 1)
    slots.started('p')
    assert.equal(slots.free('p', { total: 4, free: 1 }), 0, 'three are theirs, one ours')
    now = 10_000
    slots.ended('p')
    assert.equal(slots.free('p', { total: 4, free: 1 }), 1)
  })

  it('an advert read just after our task ended still counts that task as ours', () => {
    let now = 0
    const slots = new PeerSlots(() => now)
    slots.started('p')
    now = 300
    slots.ended('p')
    now = 300 + ADVERT_LAG_MS / 2
    slots.advertised('p') // published while the task ran, validated after its result
    assert.equal(slots.free('p', ONE_BUSY), 1)
    now = 300 + ADVERT_LAG_MS * 3
    slots.advertised('p') // a later advert that still shows the slot busy: not ours
    assert.equal(slots.free('p', ONE_BUSY), 0)
  })

  it('a refusal as busy held no slot: an advert just after it is taken at its word', () => {
    let now = 0
    const slots = new PeerSlots(() => now)
    slots.started('p')
    now = 20
    slots.ended('p', false) // refused: the peer's slot is someone else's
    now = 40
    slots.advertised('p')
    assert.equal(slots.free('p', ONE_BUSY), 0)
  })

  it('a peer that refused us as busy counts as full until its next advert, however free its adverts say it is', () => {
    let now = 0
    const slots = new PeerSlots(() => now)
    const FREE = { total: 4, free: 4 }
    slots.advertised('p')
    slots.started('p')
    slots.started('p')
    assert.equal(slots.refused('p'), true, 'the first refusal contradicts the advert')
    slots.ended('p', false)
    assert.equal(slots.refused('p'), false, 'our other task offered at the same moment: the same refusal')
    slots.ended('p', false)
    assert.equal(slots.free('p', FREE), 0, 'no re-offer before the peer says otherwise')
    now = 1_000
    assert.equal(slots.free('p', FREE), 0)
    slots.advertised('p')
    assert.equal(slots.free('p', FREE), 4, 'its next advert is taken at its word again')
    assert.equal(slots.refused('p'), true, 'a refusal after that advert contradicts it')
    now = 1_000 + BUSY_HOLD_MS
    assert.equal(slots.free('p', FREE), 4, 'held at most BUSY_HOLD_MS without an advert')
  })

  it('an advert of 1024 slots gives at most MAX_TASKS_PER_PEER of ours', () => {
    const slots = new PeerSlots(() => 0)
    assert.equal(slots.free('p', { total: 1024, free: 1024 }), MAX_TASKS_PER_PEER)
    slots.started('p')
    assert.equal(slots.free('p', { total: 1024, free: 1024 }), MAX_TASKS_PER_PEER - 1)
  })

  it('never more than the total, never below zero', () => {
    const slots = new PeerSlots(() => 0)
    slots.started('p')
    slots.started('p')
    slots.advertised('p') // two of ours in flight, the advert made before either arrived
    assert.equal(slots.free('p', { total: 2, free: 2 }), 0)
    slots.ended('p')
    assert.equal(slots.free('p', { total: 2, free: 2 }), 1)
    slots.ended('p')
    slots.ended('p') // an extra end is harmless
    assert.equal(slots.mine('p'), 0)
    assert.equal(slots.free('p', { total: 2, free: 2 }), 2)
    assert.equal(slots.free('unknown', { total: 3, free: 1 }), 1, 'a peer we never used: its advert as it stands')
  })
})
