/**
 * A compile stream whose reads hold memory only within a node-wide budget: a worker's
 * (WORKER_READ_BUDGET_BYTES, for its requesters' offers and inputs) or a requester's
 * (REQUESTER_READ_BUDGET_BYTES, for its workers' answers), each shared by every compile stream
 * from every peer, at most a share of it a peer's. The wire is lpStream's: an unsigned varint
 * length, then that many bytes.
 *
 * Invariants:
 *  - the stream is paused except while a read waits for bytes, or while it is watched between
 *    tasks (`watch`, which sees the first byte that comes): yamux then sends no window updates,
 *    so what a peer sends unasked, or has in flight while this end works or waits for room,
 *    stays within the stream's receive window (STREAM_WINDOW_BYTES);
 *  - a message's body is read only once its length is taken from the budget (waits in order,
 *    cancelled by the read's signal); the caller gives it back (`release`, idempotent) when it is
 *    done with the message's bytes;
 *  - a length over the message cap ends the read before a byte of the body is buffered;
 *  - `unread` counts what the peer sent that no read has taken (an honest peer's is 0 between
 *    tasks: it answers only what it was sent).
 * So a peer that opens many streams, each with a message of the largest size, holds the
 * budget's bytes at most, not streams × the cap.
 *
 * Pausing at once is safe on any stream libp2p hands over. js-yamux 8 pauses by overwriting the
 * stream's state, so a stream still in its first state (Init) would never send its SYN; but an
 * outbound stream leaves Init in a microtask queued when it is made (its first window update
 * carries the SYN; mesh/yamux-window.ts keeps that), long before `dialProtocol` returns it after
 * multistream-select's round trip. Nor does pausing lose the ACK of a stream whose SYN is out:
 * the ACK moves on only a stream in SYNSent, and resuming sets Established, as the ACK would. An
 * inbound stream has sent its ACK (with its first window update, or multistream-select's answer)
 * before its handler gets it.
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
  /** Bytes handed to `bytes` by the stream, and bytes reads took from it. */
  private received = 0
  private taken = 0

  constructor (private readonly stream: Stream, private readonly take: Take, private readonly maxMessageBytes: number, private readonly from: string) {
    // while a read takes a body the stream flows: a sender may get up to a window beyond it in
    this.bytes = byteStream(stream, { maxBufferSize: maxMessageBytes + 2 * STREAM_WINDOW_BYTES })
    stream.addEventListener('message', e => { this.received += e.data.byteLength })
    this.pause()
  }

  /** Bytes the peer sent that no read has taken: those a paused stream holds, and those read past a message. */
  get unread (): number {
    return this.received - this.taken + this.stream.readBufferLength
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
      this.taken += length
      return { bytes: body.subarray(), release }
    } catch (err) {
      release()
      throw err
    }
  }

  async write (message: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.writeV([message], signal)
  }

  /**
   * Watches the stream while no read is due and its peer has nothing to say (a compile stream
   * kept between tasks): lets it flow, so the first bytes the peer sends are seen as they come,
   * and calls `unasked` then, once (the caller drops the stream). The peer gets no more room than
   * a paused stream gives it: one window, and what arrives after the drop is not delivered.
   * Returns the end of the watch, which pauses the stream again: call it before the next read.
   */
  watch (unasked: () => void): () => void {
    const onMessage = (): void => { end(); unasked() }
    const end = (): void => {
      this.stream.removeEventListener('message', onMessage)
      this.pause()
    }
    this.stream.addEventListener('message', onMessage)
    if (this.stream.readStatus === 'paused') this.stream.resume()
    return end
  }

  /** Resets the stream: what is queued on it, either way, is dropped. */
  abort (err: Error): void {
    this.stream.abort(err)
  }

  /** Several messages in one write (one yamux frame when they fit). */
  async writeV (messages: Uint8Array[], signal?: AbortSignal): Promise<void> {
    const list = new Uint8ArrayList(...messages.flatMap(m => [varint.encode(m.byteLength), m]))
    await this.bytes.write(list, signal === undefined ? undefined : { signal })
  }

  /** The varint before a message. */
  private async length (signal: AbortSignal): Promise<number> {
    const prefix = new Uint8ArrayList()
    for (;;) {
      const byte = await this.bytes.read({ bytes: 1, signal })
      this.taken++
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
