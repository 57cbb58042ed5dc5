/**
 * One persistent request stream to a peer: requests carry ids, replies (possibly several per
 * request, for chunked bodies) are dispatched to the waiting handler. A broken stream fails
 * every pending request; the next request opens a new stream.
 *
 * What a peer can make this end hold through it (docs/cache.md, "Shared cache"): replies are
 * read as they come, so what is not read yet stays within STREAM_BUFFER_BYTES (past it the
 * stream is reset); a message longer than MAX_PEER_MESSAGE_BYTES ends the stream at its length,
 * before its body is buffered; a reply to a request this end never made ends it too (a peer only
 * answers), and one to a request given up on (a lookup past its time, a fetch cut) is dropped as
 * read. What a reply's handler keeps (a fetch's chunks) is its own to bound (peercache.ts).
 */
import type { Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import { GridError, MAX_PEER_MESSAGE_BYTES, Packr, validatePeerCacheMessage, type PeerCacheMessage } from '@grid/protocol'
import { STREAM_BUFFER_BYTES } from './constants.js'

export const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })

type Handler = (msg: PeerCacheMessage | Error) => void
type Outgoing = PeerCacheMessage extends infer M ? M extends { id: number } ? Omit<M, 'id'> : never : never

export class Channel {
  private readonly lp: LengthPrefixedStream<Stream>
  private readonly pending = new Map<number, Handler>()
  private nextId = 1
  closed: Error | undefined

  constructor (readonly stream: Stream, readonly peer: string) {
    this.lp = lpStream(stream, { maxDataLength: MAX_PEER_MESSAGE_BYTES, maxBufferSize: STREAM_BUFFER_BYTES })
    void this.readLoop()
  }

  /** Sends a request; `handler` gets every reply with its id until it returns true (done). */
  send (msg: Outgoing, handler: (msg: PeerCacheMessage | Error) => boolean): () => void {
    const id = this.nextId++
    if (this.closed !== undefined) { handler(this.closed); return () => {} }
    this.pending.set(id, m => { if (handler(m)) this.pending.delete(id) })
    this.lp.write(packr.pack({ ...msg, id })).catch((err: Error) => this.fail(err))
    return () => { this.pending.delete(id) }
  }

  close (): void {
    this.fail(new GridError('GRID_ERR_NODE_CLOSED', `stream to ${this.peer} closed`))
    this.stream.abort(new Error('closed'))
  }

  private async readLoop (): Promise<void> {
    try {
      for (;;) {
        const bytes = await this.lp.read()
        const msg = validatePeerCacheMessage(packr.unpack(bytes.subarray()), this.peer)
        if (msg.id < 1 || msg.id >= this.nextId) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${this.peer} sent a ${msg.type} for request ${msg.id}, which was never made`)
        this.pending.get(msg.id)?.(msg)
      }
    } catch (err) {
      this.fail(err as Error)
      this.stream.abort(err as Error)
    }
  }

  private fail (err: Error): void {
    this.closed ??= err
    for (const handler of this.pending.values()) handler(err)
    this.pending.clear()
  }
}
