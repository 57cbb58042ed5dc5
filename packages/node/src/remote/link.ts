/**
 * A peer's link, measured before our first long compile goes to it. The task samples of
 * remote.ts time a link only on tasks that moved LINK_SAMPLE_BYTES or more, and the first such
 * task of a build is usually its longest pole (runtime: ~3 MB of sources out, a 13 MB archive
 * back): sent to a helper on 10 Mbit/s Wi-Fi it took ~20 s to move where h1 compiles it in
 * 4–10 s (docs/mesh.md, "Measured in the lab"). So a requester measures each capable peer's
 * link once it builds: one small frame (the round trip), then LINK_PROBE_BYTES twice (the
 * faster counts; once on a slow link, LINK_PROBE_ONE_ROUND_MS), each answered by the peer once
 * read. The bytes beyond the round trip over the time they took is the link's time per byte,
 * noise and yamux included, as a task's bytes pay it.
 *
 * The answering side reads at most LINK_PROBE_ROUNDS frames of at most LINK_PROBE_BYTES each on
 * a stream, and one probe per peer per LINK_PROBE_MIN_GAP_MS: a member that probes in a loop
 * gets its streams closed, with a reason in the log.
 */
import type { Libp2p, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { GridError } from '@grid/protocol'
import { logger } from '../log.js'
import { deadline } from '../signals.js'
import { LINK_PROBE_BYTES, LINK_PROBE_MIN_GAP_MS, LINK_PROBE_ONE_ROUND_MS, LINK_PROBE_ROUNDS, LINK_PROBE_TIMEOUT_MS, LINK_PROTOCOL } from './constants.js'
import { packr } from './wire.js'

const log = logger('grid:link')

/** Room for a frame's msgpack envelope around its padding. */
const ENVELOPE_BYTES = 64

type LinkMessage = { type: 'probe', pad: Uint8Array } | { type: 'ack', bytes: number }

function decodeLinkMessage (bytes: Uint8Array, from: string): LinkMessage {
  let m: Record<string, unknown> | null
  try { m = packr.unpack(bytes) as Record<string, unknown> | null } catch (err) {
    throw new GridError('GRID_ERR_MESSAGE_INVALID', `undecodable link probe message from ${from}`, { cause: err })
  }
  if (m?.type === 'probe' && m.pad instanceof Uint8Array && m.pad.length <= LINK_PROBE_BYTES) return m as LinkMessage
  if (m?.type === 'ack' && Number.isSafeInteger(m.bytes)) return m as LinkMessage
  throw new GridError('GRID_ERR_MESSAGE_INVALID', `malformed link probe message from ${from}`)
}

/**
 * What a probe found: the round trip of a small frame, and the link's time per byte beyond it.
 * `atLeast`: the probe ran out of time (LINK_PROBE_TIMEOUT_MS) before its bytes were through,
 * so the link is at least that slow.
 */
export interface LinkSample { rttMs: number, msPerByte: number, atLeast: boolean }

export class LinkProbes {
  private readonly libp2p: Libp2p
  /** when each peer last probed us */
  private readonly lastProbe = new Map<string, number>()

  constructor (libp2p: Libp2p) {
    this.libp2p = libp2p
  }

  async start (): Promise<void> {
    await this.libp2p.handle(LINK_PROTOCOL, (stream: Stream, connection: { remotePeer: { toString: () => string } }) => {
      void this.answer(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: 2 })
  }

  async stop (): Promise<void> {
    await this.libp2p.unhandle(LINK_PROTOCOL).catch(() => {})
  }

  /** Answers a peer's probe: each frame acknowledged with its size once read. */
  private async answer (stream: Stream, peer: string): Promise<void> {
    const now = Date.now()
    const last = this.lastProbe.get(peer)
    if (last !== undefined && now - last < LINK_PROBE_MIN_GAP_MS) {
      log.info(`link probe from ${peer} refused: its last was ${now - last} ms ago (at most one per ${LINK_PROBE_MIN_GAP_MS / 1000} s)`)
      stream.abort(new GridError('GRID_ERR_TASK_REFUSED', 'link probes too often'))
      return
    }
    this.lastProbe.set(peer, now)
    if (this.lastProbe.size > 10_000) this.lastProbe.clear() // peers come and go; the cap keeps the map small
    const { signal, done } = deadline(LINK_PROBE_TIMEOUT_MS * 2)
    try {
      const lp = lpStream(stream, { maxDataLength: LINK_PROBE_BYTES + ENVELOPE_BYTES, maxBufferSize: (LINK_PROBE_BYTES + ENVELOPE_BYTES) * 2 })
      for (let round = 0; round < LINK_PROBE_ROUNDS; round++) {
        const m = decodeLinkMessage((await lp.read({ signal })).subarray(), peer)
        if (m.type !== 'probe') throw new GridError('GRID_ERR_MESSAGE_INVALID', `expected a link probe from ${peer}, got ${m.type}`)
        await lp.write(packr.pack({ type: 'ack', bytes: m.pad.length }), { signal })
      }
      await stream.close()
    } catch (err) {
      if (!signal.aborted && (err as { name?: string }).name !== 'UnexpectedEOFError') log.info(`link probe from ${peer} dropped: ${(err as Error).message}`)
      stream.abort(err as Error)
    } finally {
      done()
    }
  }

  /**
   * Measures the link to `peer`: undefined when it cannot be probed (it does not speak the
   * protocol, refused, or failed before the round trip was timed).
   */
  async measure (peer: string, signal: AbortSignal): Promise<LinkSample | undefined> {
    const timed = deadline(LINK_PROBE_TIMEOUT_MS, signal)
    let stream: Stream | undefined
    let rttMs: number | undefined
    let best: number | undefined
    let bigStarted = 0
    try {
      stream = await this.libp2p.dialProtocol(peerIdFromString(peer), LINK_PROTOCOL, { signal: timed.signal })
      const lp = lpStream(stream, { maxDataLength: ENVELOPE_BYTES })
      const round = async (bytes: number): Promise<number> => {
        const started = performance.now()
        await lp.write(packr.pack({ type: 'probe', pad: new Uint8Array(bytes) }), { signal: timed.signal })
        const ack = decodeLinkMessage((await lp.read({ signal: timed.signal })).subarray(), peer)
        if (ack.type !== 'ack' || ack.bytes !== bytes) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} acknowledged a link probe wrongly`)
        return performance.now() - started
      }
      rttMs = await round(1)
      for (let i = 1; i < LINK_PROBE_ROUNDS; i++) {
        bigStarted = performance.now()
        const ms = await round(LINK_PROBE_BYTES)
        best = Math.min(best ?? ms, ms)
        if (ms > LINK_PROBE_ONE_ROUND_MS) break // a slow link: once is enough
      }
      await stream.close({ signal: timed.signal }).catch(() => {})
      return { rttMs, msPerByte: Math.max(0, best as number - rttMs) / LINK_PROBE_BYTES, atLeast: false }
    } catch (err) {
      stream?.abort(new GridError('GRID_ERR_CANCELLED', 'link probe ended'))
      if (signal.aborted || rttMs === undefined) {
        if (!signal.aborted) log.debug(`link probe of ${peer} failed: ${(err as Error).message}`)
        return undefined
      }
      if (best !== undefined) return { rttMs, msPerByte: Math.max(0, best - rttMs) / LINK_PROBE_BYTES, atLeast: false }
      if (!timed.signal.aborted) {
        log.debug(`link probe of ${peer} failed: ${(err as Error).message}`)
        return undefined
      }
      // out of time with the bytes on their way: the link is at least this slow
      return { rttMs, msPerByte: Math.max(0, performance.now() - bigStarted - rttMs) / LINK_PROBE_BYTES, atLeast: true }
    } finally {
      timed.done()
    }
  }
}
