/**
 * Yamux window updates as go-yamux sends them. js-yamux (@libp2p/yamux 8) answers every data
 * frame it receives with a window update: for a compile task that is one more encrypted frame,
 * and one more socket write, per message each way (about a quarter of the socket writes of a
 * busy requester's node in the lab profile). go-yamux waits until half of the receive window is
 * used. `windowUpdatesAtHalf` makes js-yamux do the same: the wire format is unchanged, a stream
 * being opened or acknowledged still sends its flags at once, the window still grows as
 * js-yamux grows it, and a sender always has at least half a window left. In the lab (a 0.5-core
 * requester, three helpers, cold `std`) the requester sent and received ~22 % fewer packets and
 * its node used ~10 % less CPU per remote task.
 */
import { StreamState, YamuxStream } from '@libp2p/yamux/stream'
import { logger } from '../log.js'

const log = logger('grid:mesh')

/** The private state of a YamuxStream that its window update reads and writes. */
interface WindowState {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
  maxStreamWindowSize: number
  epochStart: number
  getRTT: () => number
  getSendFlags: () => number
  sendFrame: (header: { type: number, flag: number, streamID: number, length: number }) => boolean
  streamId: number
}

/** FrameType.WindowUpdate in the yamux spec. */
const WINDOW_UPDATE = 1

let patched = false

/**
 * Replaces YamuxStream's window update (once per process). Returns false, leaving js-yamux as it
 * is, if the stream class does not look like the one this was written against.
 */
export function windowUpdatesAtHalf (): boolean {
  if (patched) return true
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate?: unknown, getSendFlags?: unknown }
  if (typeof proto.sendWindowUpdate !== 'function' || typeof proto.getSendFlags !== 'function') {
    log.warn('@libp2p/yamux has changed: its window updates are left as they are')
    return false
  }
  proto.sendWindowUpdate = function (this: WindowState): void {
    if (this.state === StreamState.Paused) {
      // as js-yamux: no more data wanted for now; the epoch restarts when reading resumes
      this.epochStart = Date.now()
      return
    }
    const flags = this.getSendFlags() // moves the stream's state on: call it exactly once
    // as js-yamux: data that comes within 4 round trips of the last update doubles the window,
    // up to the maximum, so a long transfer is not held to the initial window
    const now = Date.now()
    const rtt = this.getRTT()
    if (flags === 0 && rtt > -1 && now - this.epochStart <= rtt * 4) {
      this.recvWindow = Math.min(this.recvWindow * 2, this.maxStreamWindowSize)
    }
    const delta = this.recvWindow - this.recvWindowCapacity
    // the one change: an update without flags waits until half the window is used (js-yamux
    // waited only for any of it to be used)
    if (flags === 0 && delta < this.recvWindow / 2) return
    this.recvWindowCapacity = this.recvWindow
    this.epochStart = now
    this.sendFrame({ type: WINDOW_UPDATE, flag: flags, streamID: this.streamId, length: delta })
  }
  patched = true
  return true
}
