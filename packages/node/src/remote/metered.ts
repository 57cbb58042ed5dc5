/**
 * A worker's end of a compile stream, whose reads hold memory only within the node's budget
 * (WORKER_READ_BUDGET_BYTES, shared by every compile stream from every peer, at most
 * WORKER_READ_SHARE_BYTES of it a peer's). The wire is lpStream's: an unsigned varint length,
 * then that many bytes.
 *
 * Invariants:
 *  - the stream is paused except while a read waits for bytes: yamux then sends no window
 *    updates, so what a requester has in flight while the worker compiles, or waits for room,
 *    stays within the stream's receive window (STREAM_WINDOW_BYTES);
 *  - a message's body is read only once its length is taken from the budget (waits in order,
 *    cancelled by the read's signal); the caller gives it back (`release`, idempotent) when it is
 *    done with the message's bytes;
 *  - a length over the message cap ends the read before a byte of the body is buffered.
 * So a member that opens many streams, each with a message of the largest size, holds the
 * budget's bytes at most, not streams × the cap.
 */
import type { Stream } from '@libp2p/interface'
import { byteStream, type ByteStream } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import * as varint from 'uint8-varint'
import { GridError } from '@grid/protocol'
import type { Release } from '../budget.js'
import { STREAM_WINDOW_BYTES } from '../mesh/constants.js'

/** A varint of a length up to 2^53 takes at most this many bytes. */
const MAX_LENGTH_BYTES = 8

export interface Metered { bytes: Uint8Array, release: Release }

/** Takes a message's bytes from the budget: waits in order, rejects when `signal` aborts. */
export type Take = (bytes: number, signal: AbortSignal) => Promise<Release>

export class MeteredStream {
  private readonly bytes: ByteStream<Stream>

  constructor (private readonly stream: Stream, private readonly take: Take, private readonly maxMessageBytes: number, private readonly from: string) {
    // while a read takes a body the stream flows: a sender may get up to a window beyond it in
    this.bytes = byteStream(stream, { maxBufferSize: maxMessageBytes + 2 * STREAM_WINDOW_BYTES })
    this.pause()
  }

  /** The next message. Rejects when the stream ends, before or inside it, or `signal` aborts. */
  async read (signal: AbortSignal): Promise<Metered> {
    const length = await this.flowing(async () => await this.length(signal))
    if (length > this.maxMessageBytes) {
      throw new GridError('GRID_ERR_MESSAGE_INVALID', `a compile message of ${length} bytes from ${this.from} is over the cap of ${this.maxMessageBytes}`)
    }
    const release = await this.take(length, signal) // paused meanwhile
    try {
      const body = await this.flowing(async () => await this.bytes.read({ bytes: length, signal }))
      return { bytes: body.subarray(), release }
    } catch (err) {
      release()
      throw err
    }
  }

  async write (message: Uint8Array): Promise<void> {
    await this.bytes.write(new Uint8ArrayList(varint.encode(message.byteLength), message))
  }

  /** The varint before a message. */
  private async length (signal: AbortSignal): Promise<number> {
    const prefix = new Uint8ArrayList()
    for (;;) {
      const byte = await this.bytes.read({ bytes: 1, signal })
      prefix.append(byte)
      if (byte.get(0) < 0x80) return varint.decode(prefix)
      if (prefix.byteLength >= MAX_LENGTH_BYTES) throw new GridError('GRID_ERR_MESSAGE_INVALID', `a compile message's length from ${this.from} does not end`)
    }
  }

  /** Runs a read with the stream flowing, and pauses it again after. */
  private async flowing<T> (read: () => Promise<T>): Promise<T> {
    if (this.stream.readStatus === 'paused') this.stream.resume()
    try {
      return await read()
    } finally {
      this.pause()
    }
  }

  private pause (): void {
    if (this.stream.readStatus === 'readable') this.stream.pause()
  }
}
