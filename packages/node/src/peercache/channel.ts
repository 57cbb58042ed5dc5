/**
 * One persistent request stream to a peer: requests carry ids, replies (possibly several per
 * request, for chunked bodies) are dispatched to the waiting handler. A broken stream fails
 * every pending request; the next request opens a new stream.
 */
import type { Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import { GridError, MAX_PEER_MESSAGE_BYTES, Packr, validatePeerCacheMessage, type PeerCacheMessage } from '@grid/protocol'

export const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })

type Handler = (msg: PeerCacheMessage | Error) => void
type Outgoing = PeerCacheMessage extends infer M ? M extends { id: number } ? Omit<M, 'id'> : never : never

export class Channel {
  private readonly lp: LengthPrefixedStream<Stream>
  private readonly pending = new Map<number, Handler>()
  private nextId = 1
  closed: Error | undefined

  constructor (readonly stream: Stream, readonly peer: string) {
    this.lp = lpStream(stream, { maxDataLength: MAX_PEER_MESSAGE_BYTES, maxBufferSize: MAX_PEER_MESSAGE_BYTES * 4 })
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
