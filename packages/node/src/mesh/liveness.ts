/**
 * Whether each connection's peer is still there, in place of libp2p's connection monitor.
 *
 * libp2p's monitor pings every connection every 10 s and aborts one whose ping is not answered
 * within 5 s. A ping travels in the same TCP connection as everything else, behind the bytes
 * already queued on it: on a 10 Mbit/s link, ~6 MB queued ahead delays the answer past 5 s, and
 * the monitor ended connections whose peer was sending us an archive as fast as the link
 * allowed (docs/mesh.md, "Its link measured before the first long pole"). The task then failed
 * and its peer sat out as a failed one.
 *
 * Here a connection is alive while its peer's bytes arrive: a download brings them, and an
 * upload brings the peer's window updates as it takes our data in. A connection that has
 * brought nothing for LIVENESS_QUIET_MS is pinged; it is aborted when the ping is not answered
 * within LIVENESS_PING_TIMEOUT_MS and nothing came from the peer in the second half of that
 * time (the first half holds the peer's answer that opened the ping's stream, when it has one).
 * A vanished peer (no FIN, no RST) or a stopped process is found as soon as before: 10–15 s
 * after its last byte.
 */
import type { Connection } from '@libp2p/interface'
import { PING_PROTOCOL } from '@libp2p/ping'
import { byteStream } from '@libp2p/utils'
import { GridError } from '@grid/protocol'
import { logger } from '../log.js'
import { deadline } from '../signals.js'
import { LIVENESS_CHECK_MS, LIVENESS_PING_TIMEOUT_MS, LIVENESS_QUIET_MS } from './constants.js'

const log = logger('grid:mesh')

/** The bytes of a ping and of its answer (libp2p's ping protocol). */
const PING_BYTES = 32

/** The raw (TCP) connection beneath a libp2p connection: an event target of the bytes it reads. */
interface RawConnection { addEventListener: (type: 'message', listener: () => void) => void }

/** The raw connection of `conn`, or undefined if libp2p does not expose it (then the ping alone decides). */
function rawOf (conn: Connection): RawConnection | undefined {
  const raw = (conn as unknown as { maConn?: Partial<RawConnection> }).maConn
  return typeof raw?.addEventListener === 'function' ? raw as RawConnection : undefined
}

export interface LivenessInit {
  connections: () => Connection[]
  /** aborted when the node stops: pings in flight end */
  signal: AbortSignal
  /** LIVENESS_QUIET_MS and LIVENESS_PING_TIMEOUT_MS unless given (tests) */
  quietMs?: number
  pingTimeoutMs?: number
}

export class Liveness {
  private readonly init: LivenessInit
  /** When each connection last brought a byte (performance.now()). */
  private readonly heard = new WeakMap<Connection, number>()
  /** Connections with a ping in flight. */
  private readonly pinging = new WeakSet<Connection>()
  private timer: NodeJS.Timeout | undefined

  constructor (init: LivenessInit) {
    this.init = init
  }

  /** Starts watching a new connection's incoming bytes (the mesh calls this on connection:open). */
  watch (conn: Connection): void {
    this.heard.set(conn, performance.now())
    rawOf(conn)?.addEventListener('message', () => { this.heard.set(conn, performance.now()) })
  }

  start (): void {
    this.timer = setInterval(() => { this.check() }, LIVENESS_CHECK_MS)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
  }

  /** Pings each open connection that has been quiet for LIVENESS_QUIET_MS. */
  check (): void {
    const now = performance.now()
    for (const conn of this.init.connections()) {
      if (conn.status !== 'open' || this.pinging.has(conn)) continue
      const heard = this.heard.get(conn)
      if (heard === undefined) { this.watch(conn); continue } // opened before the mesh listened for connections
      if (now - heard < (this.init.quietMs ?? LIVENESS_QUIET_MS)) continue
      this.pinging.add(conn)
      void this.probe(conn).finally(() => { this.pinging.delete(conn) })
    }
  }

  /** Pings `conn`; aborts it when the ping goes unanswered for LIVENESS_PING_TIMEOUT_MS and nothing came in its second half. */
  private async probe (conn: Connection): Promise<void> {
    const timeoutMs = this.init.pingTimeoutMs ?? LIVENESS_PING_TIMEOUT_MS
    const timed = deadline(timeoutMs, this.init.signal)
    try {
      await ping(conn, timed.signal)
    } catch (err) {
      // a peer that does not speak ping answered multistream-select: it is there
      if (this.init.signal.aborted || (err as { name?: string }).name === 'UnsupportedProtocolError') return
      // Its bytes are still coming: the ping waited behind them. The peer's answer that opened
      // the ping's stream came at its start, in the first half: it does not count.
      const quiet = performance.now() - (this.heard.get(conn) ?? 0)
      if (quiet < timeoutMs / 2) return
      const quietS = (quiet / 1000).toFixed(1)
      log.info(`connection to ${conn.remotePeer.toString()} ended: nothing from it for ${quietS} s, and no answer to a ping (${(err as Error).message})`)
      conn.abort(new GridError('GRID_ERR_PEER_GONE', `no byte from ${conn.remotePeer.toString()} for ${quietS} s, and no answer to a ping`))
    } finally {
      timed.done()
    }
  }
}

/** One ping over `conn` (libp2p's ping protocol): PING_BYTES out, the same number back. */
async function ping (conn: Connection, signal: AbortSignal): Promise<void> {
  const stream = await conn.newStream(PING_PROTOCOL, { signal, runOnLimitedConnection: true })
  try {
    const bytes = byteStream(stream)
    await Promise.all([
      bytes.write(crypto.getRandomValues(new Uint8Array(PING_BYTES)), { signal }),
      bytes.read({ bytes: PING_BYTES, signal })
    ])
    await stream.close({ signal })
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}
