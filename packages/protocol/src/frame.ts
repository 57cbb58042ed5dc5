/**
 * Length-prefixed msgpack frames: `u32 BE length` then a msgpack map of `length` bytes.
 * The length is checked against the cap before a byte of the body is buffered, so an oversized
 * frame costs four bytes of memory, not the size it claims.
 */
import { Packr } from './msgpack.js'
import { MAX_FRAME_BYTES } from './constants.js'
import { GridError } from './errors.js'
import { validateMessage, type Message } from './messages.js'
import type { SpawnerMessage } from './spawner.js'

const HEADER_BYTES = 4

// Plain maps on the wire (no msgpackr records extension): the Go shim reads these frames.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, structuredClone: false })

export function encodeFrame (message: Message | SpawnerMessage): Buffer {
  const body = packr.pack(message)
  if (body.length > MAX_FRAME_BYTES) {
    throw new GridError('GRID_ERR_FRAME_TOO_LARGE', `${message.type} frame of ${body.length} bytes exceeds ${MAX_FRAME_BYTES}`)
  }
  const frame = Buffer.allocUnsafe(HEADER_BYTES + body.length)
  frame.writeUInt32BE(body.length, 0)
  body.copy(frame, HEADER_BYTES)
  return frame
}

/**
 * Decodes a byte stream into validated messages: the control socket's (`validateMessage`) unless
 * told otherwise. After it throws, the stream is unusable.
 */
export class FrameDecoder<T = Message> {
  private chunks: Buffer[] = []
  private buffered = 0
  private readonly maxFrameBytes: number
  private readonly from: string
  private readonly validate: (value: unknown, from: string) => T

  constructor (options: { maxFrameBytes?: number, from?: string, validate?: (value: unknown, from: string) => T } = {}) {
    this.maxFrameBytes = options.maxFrameBytes ?? MAX_FRAME_BYTES
    this.from = options.from ?? 'peer'
    this.validate = options.validate ?? (validateMessage as (value: unknown, from: string) => T)
  }

  /** Bytes received of frames not yet complete. */
  get pending (): number {
    return this.buffered
  }

  /** Adds bytes; returns every message completed by them. Throws on a bad frame. */
  push (chunk: Uint8Array): T[] {
    this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))
    this.buffered += chunk.byteLength
    const out: T[] = []
    for (;;) {
      if (this.buffered < HEADER_BYTES) return out
      const head = this.peek(HEADER_BYTES)
      const length = head.readUInt32BE(0)
      if (length > this.maxFrameBytes) {
        throw new GridError('GRID_ERR_FRAME_TOO_LARGE', `frame of ${length} bytes from ${this.from} exceeds the cap of ${this.maxFrameBytes}`)
      }
      if (this.buffered < HEADER_BYTES + length) return out
      const frame = this.take(HEADER_BYTES + length)
      out.push(this.validate(unpackBody(frame.subarray(HEADER_BYTES), this.from), this.from))
    }
  }

  private peek (n: number): Buffer {
    const first = this.chunks[0] as Buffer
    if (first.length >= n) return first
    const all = Buffer.concat(this.chunks)
    this.chunks = [all]
    return all
  }

  private take (n: number): Buffer {
    const all = this.peek(n)
    const frame = all.subarray(0, n)
    const rest = all.subarray(n)
    this.chunks = rest.length > 0 ? [rest] : []
    this.buffered -= n
    return frame
  }
}

export function decodeBody (body: Uint8Array, from = 'peer'): Message {
  return validateMessage(unpackBody(body, from), from)
}

function unpackBody (body: Uint8Array, from: string): unknown {
  try {
    return packr.unpack(body)
  } catch (err) {
    throw new GridError('GRID_ERR_FRAME_MALFORMED', `undecodable frame from ${from}: ${(err as Error).message}`, { cause: err })
  }
}
