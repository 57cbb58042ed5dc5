// Yamux window updates once half the receive window is used (mesh/yamux-window.ts), on the real
// js-yamux stream class: far fewer update frames than one per data frame, a sender that never
// runs out of window, and the flags that open a stream still sent with the first update.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { defaultLogger } from '@libp2p/logger'
import { StreamState, YamuxStream } from '@libp2p/yamux/stream'
import { Uint8ArrayList } from 'uint8arraylist'
import { windowUpdatesAtHalf } from '@grid/node/server'

interface Header { type: number, flag: number, streamID: number, length: number }
const WINDOW = 256 * 1024 // js-yamux's initial stream window
const FRAME = 16 * 1024
const ACK = 2

/**
 * A stream that receives `total` bytes (its round trip `rttMs`; -1: not measured yet) in frames of FRAME from a sender that only sends while its
 * window (WINDOW, plus the updates the stream sent back) allows. Returns the update frames, and
 * whether the sender ever found its window too small for the next frame.
 */
function receive (total: number, state: StreamState, rttMs = -1): { updates: Header[], stalled: boolean } {
  const updates: Header[] = []
  const stream = new YamuxStream({
    id: '1', streamId: 1, state, direction: 'inbound', log: defaultLogger().forComponent('test'),
    sendFrame: (header: Header) => { updates.push(header); return true },
    getRTT: () => rttMs
  })
  let window = WINDOW
  let applied = 0 // updates the sender has added to its window
  let stalled = false
  for (let sent = 0; sent < total; sent += FRAME) {
    for (; applied < updates.length; applied++) window += (updates[applied] as Header).length
    if (window < FRAME) stalled = true
    window -= FRAME
    stream.handleData({ header: { type: 0, flag: 0, streamID: 1, length: FRAME }, data: new Uint8ArrayList(new Uint8Array(FRAME)) } as never)
  }
  return { updates, stalled }
}

describe('yamux window updates', () => {
  it('js-yamux alone sends one per data frame (what the change is for)', () => {
    // run before the patch: the test file is the only one in its process that loads yamux
    const { updates, stalled } = receive(64 * FRAME, StreamState.Established)
    assert.equal(updates.length, 64)
    assert.equal(stalled, false)
  })

  it('with windowUpdatesAtHalf, one per half window, and the sender never waits', () => {
    assert.equal(windowUpdatesAtHalf(), true)
    const total = 4 * 1024 * 1024
    const { updates, stalled } = receive(total, StreamState.Established)
    assert.equal(stalled, false)
    assert.equal(updates.length, total / (WINDOW / 2))
    for (const u of updates) assert.ok(u.length >= WINDOW / 2, `an update of ${u.length} bytes`)
  })

  it('a window used up within a few round trips still grows, as in js-yamux', () => {
    windowUpdatesAtHalf()
    const { updates, stalled } = receive(4 * 1024 * 1024, StreamState.Established, 60_000)
    assert.equal(stalled, false)
    assert.ok(updates.some(u => u.length > WINDOW), `updates of ${updates.map(u => u.length).join(', ')} bytes`)
  })

  it('an inbound stream acknowledges with its first update, however small', () => {
    windowUpdatesAtHalf()
    const { updates } = receive(FRAME, StreamState.SYNReceived)
    assert.equal(updates.length, 1)
    assert.equal(updates[0]?.flag, ACK)
    assert.equal(updates[0]?.length, FRAME)
  })
})
