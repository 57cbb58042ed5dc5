/**
 * Bodies packed for a slow link: compiled archives on their way back from a worker, a task's
 * inputs on their way to it, and cache bodies fetched from a member. Go's package archives
 * shrink to ~27 % with brotli at quality 1 (std's, 82 MB of them), which packs and unpacks at
 * ~250 MB/s on one core of the machine this was measured on. On a gigabit LAN that costs about
 * what it saves (0.5 MB: ~2 ms to pack, ~2 ms to unpack, ~2.9 ms less on the wire), so bodies go
 * packed only over a link whose probe was slower than PACK_BELOW_BYTES_PER_MS; at 100 Mbit/s the
 * same archive saves ~29 ms, on 10 Mbit/s Wi-Fi ~0.3 s.
 *
 * The side that measured the link asks (`pack` in an offer or a fetch); the sender packs only
 * when asked and says so on what it sends, so a member of an earlier version, which neither asks
 * nor packs, is unaffected. That side packs the inputs it sends with a task only to a worker
 * whose advert says it unpacks them (`unpacks`). The receiver unpacks into at most the size it
 * expects: a body that does not unpack, or unpacks to more, is the sender's fault like a wrong
 * body. Both run in libuv's thread pool, off the event loop, except for small bodies (below).
 */
import { promisify } from 'node:util'
import { brotliCompress, brotliCompressSync, brotliDecompress, brotliDecompressSync, constants } from 'node:zlib'
import { GridError } from '@grid/protocol'

/**
 * A link whose probe moved fewer bytes per ms than this (~128 Mbit/s) gets bodies packed: a
 * 100 Mbit/s link times at ~11.5 MB/s (the lab's at ~15, tc's burst adding a little), a gigabit
 * one at 60–110 MB/s between the lab's half-core hosts, whose CPU the probe counts too (23 MB/s
 * at the slowest seen). There packing costs more CPU than it saves: with every body packed, a
 * peer's warm cache of `std` took 12.9–13.5 s against 10.6–12.1 s (docs/cache.md).
 */
export const PACK_BELOW_BYTES_PER_MS = 16_000

/** The share of its bytes a packed archive keeps, for predicting a task's time on a link (0.27 measured; rounded up). */
export const PACKED_SHARE = 0.3

/** Inputs shorter than this go as they are: packing would save a few bytes, if any, for its cost. */
export const PACK_MIN_BYTES = 1024

const compress = promisify(brotliCompress)
const decompress = promisify(brotliDecompress)

/**
 * Bodies up to this long are packed on the event loop, and bodies that may unpack to at most
 * UNPACK_SYNC_BYTES unpacked there (~0.4 ms of a core each at most): a trip through the thread
 * pool costs a starved host a wait for the event loop, which was more than the work. In the lab
 * (a requester of 0.5 core on 10 Mbit/s) inputs packed each in the pool took the remote tasks'
 * overhead p50 from 100-113 ms to 174-185 ms.
 */
const PACK_SYNC_BYTES = 64 * 1024
const UNPACK_SYNC_BYTES = 256 * 1024

/**
 * Output buffer of one pass of the thread pool, for a body expected to come to `bytes`. zlib's
 * default (16 KiB) sends a 0.5 MB archive through the event loop 32 times, each a wait on a
 * starved host: in the lab (0.5 core) packed archives took ~60 ms more per task that way.
 */
function chunkFor (bytes: number): number {
  return Math.min(4 << 20, Math.max(64 << 10, bytes))
}

/** Whether bodies over a link of `msPerByte` (as measured; undefined: never) go packed. */
export function packsOver (msPerByte: number | undefined): boolean {
  return msPerByte !== undefined && msPerByte * PACK_BELOW_BYTES_PER_MS > 1
}

/** `body` packed, or undefined when packing does not make it smaller. */
export async function pack (body: Uint8Array): Promise<Buffer | undefined> {
  const options = {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 1,
      [constants.BROTLI_PARAM_SIZE_HINT]: body.byteLength
    },
    chunkSize: chunkFor(body.byteLength >> 1) // packed archives come to ~27 %
  }
  const packed = body.byteLength <= PACK_SYNC_BYTES ? brotliCompressSync(body, options) : await compress(body, options)
  return packed.byteLength < body.byteLength ? packed : undefined
}

/**
 * `packed` unpacked, at most `maxBytes` long; `what` names the body in the error
 * (GRID_ERR_MESSAGE_INVALID) when it does not unpack or would be longer.
 */
export async function unpack (packed: Uint8Array, maxBytes: number, what: string): Promise<Buffer> {
  try {
    const options = { maxOutputLength: Math.max(1, maxBytes), chunkSize: chunkFor(Math.min(maxBytes, packed.byteLength * 5)) }
    return maxBytes <= UNPACK_SYNC_BYTES ? brotliDecompressSync(packed, options) : await decompress(packed, options)
  } catch (err) {
    const code = (err as { code?: unknown }).code
    const why = code === 'ERR_BUFFER_TOO_LARGE' ? `unpacks to more than ${maxBytes} bytes` : 'does not unpack'
    throw new GridError('GRID_ERR_MESSAGE_INVALID', `${what} ${why}`, { cause: err })
  }
}
