/** `grid peers`: the members this node knows, from their adverts. */
import { GridError } from '@grid/protocol'
import type { GlobalOptions } from '../options.js'
import { noArguments, parseFlags } from '../options.js'
import type { Output } from '../output.js'
import { formatPeers } from '../format.js'
import { connectNode } from '../session.js'

export const PEERS_HELP = `usage: grid [global options] peers

Lists the peers the running node knows: PeerId, address, grid version, Go toolchain, compile
slots (free/total), load, round-trip time, when its last advert arrived, its policy for remote
work, its link as this node measured it (MB/s: probed when a build begins, and timed on big
tasks; "packed" when the probe found it slow enough that archives and cache bodies from it come
packed, and so do task inputs to it if its advert says it unpacks them), and the compiles this
node sent it (with those that failed). Below the table: peers whose cache entries are refused,
members of another grid version (incompatible) or toolchain (other toolchain), and connected
peers no advert of which this node takes (not listed), each with why.
With --json, an array of the listed peers (each with its full advert: addrs are its listen
addresses; address is the far end of the open connection, for one the peer dialled a port of
its own, not one to dial); the connected ones not listed are in \`grid --json status\`, under
mesh.unlisted.`

export async function peers (args: string[], options: GlobalOptions, output: Output): Promise<number> {
  const { positional } = parseFlags('peers', args, {})
  noArguments('peers', positional)
  const client = await connectNode(options)
  if (client === undefined) {
    throw new GridError('GRID_ERR_NODE_UNREACHABLE', `no node answers on ${options.control}`, { hint: 'start one with `grid daemon`' })
  }
  try {
    const { peers: list, unlisted } = await client.request({ type: 'peers' })
    // none: say whether that is because the node has no mesh at all, not one still forming
    const meshOff = !options.json && list.length === 0 && (await client.request({ type: 'status' })).status.mesh === null
    output.out(options.json ? JSON.stringify(list) : formatPeers(list, Date.now(), unlisted ?? [], meshOff))
  } finally {
    client.close()
  }
  return 0
}
