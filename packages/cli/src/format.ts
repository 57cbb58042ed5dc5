/**
 * The human-readable renderings of the node's state (`grid status`, `grid peers`, the cache
 * commands). Pure functions of what the node reports; `--json` prints the reports instead.
 */
import { formatBytes, formatLinkRate, type BuildStats, type CacheStats, type Failure, type NodeStatus, type PeerInfo, type UnlistedPeer } from '@grid/protocol'

interface Toolchain { go?: string, compiler?: string }

export function formatStatus (s: NodeStatus, now = Date.now()): string {
  const c = s.counters
  const w = s.mesh?.worker
  return [
    `node:    ${s.nodeId} (${s.mode}, grid ${s.version}, pid ${s.pid}, up ${Math.round((now - s.startedAt) / 1000)} s)`,
    `control: ${s.control}`,
    ...(s.log == null ? [] : [`log:     ${s.log}`]),
    `slots:   ${s.compilesRunning}/${s.slots} busy`,
    `builds:  ${s.buildsServed} served, ${s.activeBuilds} running`,
    ...(s.lastBuild == null ? [] : [`  last: ${formatLastBuild(s.lastBuild, now)}`]),
    `served:  ${c.hits} hits (${c.peerHits} from peers), ${c.misses} misses, ${c.puts} puts; ` +
      `compiles for its builds ${c.compiles} here, ${c.remoteCompiles} on peers; ${c.corrupt} corrupt blobs dropped, ${c.badFrames} bad connections`,
    ...(s.mesh === null
      ? meshOff(s.meshFailure)
      : [`mesh:    swarm ${s.mesh.swarm}, ${s.mesh.peers} peers${notListed(s.mesh.unlisted)}, mDNS ${s.mesh.mdns ? 'on' : 'off'}, accept-remote ${s.mesh.policy}${taking(s.mesh)}`,
          ...(w === undefined ? [] : [`  tasks from peers: ${w.ran} compiled, ${w.shared} joined an identical running one, ${w.refused} refused (busy or not acceptable), ${w.failed} failed${packedNote(w)}`]),
          ...s.mesh.addrs.map(a => `  ${a}`)]),
    formatCache(s.cache)
  ].join('\n')
}

/** A node with no mesh: none asked for, or one that did not start (its builds run alone), and why. */
function meshOff (failure: Failure | null | undefined): string[] {
  if (failure == null) return ['mesh:    off']
  return [`mesh:    not started, its builds run alone: ${failure.message} (${failure.code})`, ...(failure.hint === undefined ? [] : [`  hint: ${failure.hint}`])]
}

/** What a worker packed and unpacked for requesters on slow links, when it did. */
function packedNote (w: { packed?: number, unpacked?: number }): string {
  const notes = [
    ...((w.packed ?? 0) > 0 ? [`${w.packed ?? 0} archives sent back packed`] : []),
    ...((w.unpacked ?? 0) > 0 ? [`${w.unpacked ?? 0} tasks' inputs came packed`] : [])
  ]
  return notes.length === 0 ? '' : `; ${notes.join(', ')} (slow links)`
}

/** Connected members no advert of which is taken, when there are any (`grid peers` says why). */
function notListed (unlisted: UnlistedPeer[] | undefined): string {
  return unlisted === undefined || unlisted.length === 0 ? '' : ` (and ${unlisted.length} connected but not listed: see grid peers)`
}

/** Whether the node takes peers' compiles now, and the load its `idle` policy judges by. */
function taking (m: { accepting?: boolean, load?: number }): string {
  if (m.accepting === undefined) return ''
  return ` (${m.accepting ? 'taking work now' : 'not taking work now'}${m.load === undefined ? '' : `; own load ${m.load.toFixed(2)} per core`})`
}

/** One line for the build that ended last: what ran, what the cache and the compiles did, when. */
function formatLastBuild (b: BuildStats, now: number): string {
  const ago = Math.max(0, Math.round((now - (b.endedAt ?? now)) / 1000))
  return `${b.command.join(' ')}: ${b.actions} actions, ${b.cache.hits} hits, ${b.cache.misses} misses, ` +
    `${b.compiles.local} compiles here, ${b.compiles.remote} on peers (ended ${ago} s ago)`
}

export function formatCache (c: CacheStats): string {
  const lines = [`cache:   ${c.entries} entries, ${c.blobs} blobs, ${formatBytes(c.bytes)} in ${c.dir}`]
  // own entries whose archive a peer's worker compiled (docs/cache.md, invariant 5)
  const p = c.compiledOnPeers
  if (p !== undefined && p.entries > 0) {
    const by = Object.entries(p.byPeer).sort((a, b) => b[1] - a[1]).map(([peer, n]) => `${n} by ${peer}`)
    lines.push(`         of which ${p.entries} compiled on peers: ${by.join(', ')}`)
  }
  const w = c.workerInputs
  if (w !== undefined && w.inputs > 0) lines.push(`         and ${w.inputs} input${w.inputs === 1 ? '' : 's'} of peers' compiles, ${formatBytes(w.bytes)} (each kept 3 days from its last use)`)
  return lines.join('\n')
}

/** `meshOff`: the node runs without a mesh, so it has no peers to wait for. */
export function formatPeers (list: PeerInfo[], now = Date.now(), unlisted: UnlistedPeer[] = [], meshOff = false): string {
  // connected, but no advert of theirs taken: another grid version's, say
  const others = unlisted.map(u => `not listed: ${u.peerId} at ${u.address ?? '?'}${u.agent === null ? '' : ` (${u.agent})`}: ${u.why}` +
    (u.protocols.length > 0 ? `; it speaks ${u.protocols.join(' ')}` : '') + (u.why === 'no advert yet' ? '' : VERSION_HINT))
  if (list.length === 0 && meshOff) return 'no peers: this node runs without a mesh (grid daemon --no-mesh, "mesh": false in the config, or the node of a grid build with no swarm key)'
  if (list.length === 0) return [...others, 'no peers (yet): check `grid status` for this node\'s addresses and the log for refused connections'].join('\n')
  const rows = list.map(p => {
    const a = p.advert as { version?: string, toolchains?: Toolchain[], slots?: { free: number, total: number }, load?: number, policy?: string, accepting?: boolean }
    return [
      p.peerId,
      peerAddress(p),
      a.version ?? '?',
      (a.toolchains ?? []).map(t => t.go ?? '?').join(',') || '-',
      a.slots === undefined ? '-' : `${a.slots.free}/${a.slots.total}`,
      a.load === undefined ? '-' : a.load.toFixed(2),
      p.rttMs === null ? (p.connected ? '?' : 'disconnected') : `${p.rttMs.toFixed(1)} ms`,
      `${Math.round((now - p.lastSeen) / 1000)} s ago`,
      `${a.policy ?? '?'}${a.accepting === true ? '' : ' (busy)'}`,
      p.remote.msPerByte === undefined || p.remote.msPerByte === null ? '-' : `${formatLinkRate(p.remote.msPerByte)}${p.remote.packed === true ? ' packed' : ''}`,
      p.remote.failed === 0 ? `${p.remote.ok}` : `${p.remote.ok} (${p.remote.failed} failed)`
    ]
  })
  const head = ['PEER', 'ADDRESS', 'GRID', 'GO', 'SLOTS', 'LOAD', 'RTT', 'SEEN', 'POLICY', 'LINK', 'SENT']
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] as string).length)))
  const table = [head, ...rows].map(r => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd())
  // a peer caught lying about the cache: its claims are refused from then on (docs/cache.md)
  const untrusted = list.filter(p => p.untrusted !== null).map(p => `untrusted: ${p.peerId}: ${p.untrusted as string}`)
  // a member of another grid version: listed, but it cannot take what this node would send it
  const incompatible = list.filter(p => p.incompatible != null).map(p =>
    `incompatible: ${p.peerId} (grid ${(p.advert as { version?: string }).version ?? '?'}): ${p.incompatible as string}${VERSION_HINT}`)
  // another toolchain: compiles do not go to it, nor do its cache entries come here
  const otherToolchain = list.filter(p => p.otherToolchain != null).map(p => `other toolchain: ${p.peerId}: ${p.otherToolchain as string}`)
  const notes = [...untrusted, ...incompatible, ...otherToolchain, ...others]
  return [...table, ...(notes.length === 0 ? [] : ['', ...notes])].join('\n')
}

/** What to do about a member of another grid version. */
const VERSION_HINT = ' (another grid version: run the same one on every member, see `grid --version`)'

/**
 * The address to show for a peer: the listen address on the host this node reaches it at
 * (the open connection's IP), else its first one that is not loopback. A peer lists its
 * loopback address too, which names this machine, not the peer's.
 */
export function peerAddress (p: Pick<PeerInfo, 'addrs' | 'address'>): string {
  const host = (a: string): string | undefined => /^\/(?:ip4|ip6|dns4|dns6|dns)\/([^/]+)/.exec(a)?.[1]
  const via = p.address === null ? undefined : host(p.address)
  const loopback = (a: string): boolean => { const h = host(a); return h !== undefined && (h.startsWith('127.') || h === '::1' || h === 'localhost') }
  return (via === undefined ? undefined : p.addrs.find(a => host(a) === via)) ??
    p.address ?? p.addrs.find(a => !loopback(a)) ?? p.addrs[0] ?? '-'
}
