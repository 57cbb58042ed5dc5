/** `grid peers`: the members this node knows, from their adverts. */
import { GridError, type PeerInfo } from '@grid/protocol'
import type { GlobalOptions } from '../options.js'
import { parseFlags, usageError } from '../options.js'
import type { Output } from '../output.js'
import { connectNode } from '../session.js'

export const PEERS_HELP = `usage: grid [global options] peers

Lists the peers the running node knows: PeerId, address, Go toolchain, compile slots (free/total),
load, round-trip time, when its last advert arrived, and its policy for remote work.
With --json, an array of the same (each with the peer's full advert).`

interface Toolchain { go?: string, compiler?: string }

export async function peers (args: string[], options: GlobalOptions, output: Output): Promise<number> {
  const { positional } = parseFlags('peers', args, {})
  if (positional.length > 0) throw usageError(`grid peers takes no arguments, got ${positional.join(' ')}`)
  const client = await connectNode(options)
  if (client === undefined) {
    throw new GridError('GRID_ERR_NODE_UNREACHABLE', `no node answers on ${options.control}`, { hint: 'start one with `grid daemon`' })
  }
  try {
    const { peers: list } = await client.request({ type: 'peers' })
    output.out(options.json ? JSON.stringify(list) : formatPeers(list))
  } finally {
    client.close()
  }
  return 0
}

function formatPeers (list: PeerInfo[]): string {
  if (list.length === 0) return 'no peers (yet): check `grid status` for this node\'s addresses and the log for refused connections'
  const rows = list.map(p => {
    const a = p.advert as { toolchains?: Toolchain[], slots?: { free: number, total: number }, load?: number, policy?: string, accepting?: boolean }
    return [
      p.peerId,
      p.addrs[0] ?? '-',
      (a.toolchains ?? []).map(t => t.go ?? '?').join(',') || '-',
      a.slots === undefined ? '-' : `${a.slots.free}/${a.slots.total}`,
      a.load === undefined ? '-' : a.load.toFixed(2),
      p.rttMs === null ? (p.connected ? '?' : 'disconnected') : `${p.rttMs.toFixed(1)} ms`,
      `${Math.round((Date.now() - p.lastSeen) / 1000)} s ago`,
      `${a.policy ?? '?'}${a.accepting === true ? '' : ' (busy)'}`
    ]
  })
  const head = ['PEER', 'ADDRESS', 'GO', 'SLOTS', 'LOAD', 'RTT', 'SEEN', 'POLICY']
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] as string).length)))
  return [head, ...rows].map(r => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()).join('\n')
}
