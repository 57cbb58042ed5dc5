/** The only place that prints. Commands return text or objects; this renders them. */
import { formatBytes, type BuildStats } from '@grid/protocol'

export interface Output {
  json: boolean
  out: (text: string) => void
  err: (text: string) => void
}

export function createOutput (json: boolean): Output {
  return {
    json,
    out: text => { process.stdout.write(text.endsWith('\n') ? text : text + '\n') },
    err: text => { process.stderr.write(text.endsWith('\n') ? text : text + '\n') }
  }
}

/**
 * A help text that was asked for: as it is, or with --json as `{"command": NAME, "help": TEXT}`
 * on stdout (`command` null for grid's own), as the version and errors are: a script that asked
 * for JSON gets JSON, whatever it asked.
 */
export function renderHelp (output: Output, text: string, command: string | undefined): void {
  output.out(output.json ? JSON.stringify({ command: command ?? null, help: text }) : text)
}

export function renderError (output: Output, err: unknown): void {
  const e = err as { code?: string, message?: string, hint?: string }
  const code = typeof e.code === 'string' && e.code.startsWith('GRID_ERR_') ? e.code : 'GRID_ERR_INTERNAL'
  if (output.json) {
    output.out(JSON.stringify({ error: { code, message: e.message ?? String(err), hint: e.hint ?? null } }))
    return
  }
  output.err(`grid: ${e.message ?? String(err)} (${code})`)
  if (e.hint !== undefined) output.err(`  hint: ${e.hint}`)
  if (code === 'GRID_ERR_INTERNAL' && err instanceof Error && err.stack !== undefined) output.err(err.stack)
}

/**
 * The last error a grid command printed (`grid: MESSAGE (CODE)`, then its `  hint: …` line, as
 * renderError writes them), or undefined when it printed none (a crash prints a stack instead).
 */
export function lastError (printed: string): { message: string, hint: string | undefined } | undefined {
  const lines = printed.split('\n')
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^grid: (.*\(GRID_ERR_[A-Z_]+\))$/.exec(lines[i] as string)
    if (m === null) continue
    const hint = /^ {2}hint: (.*)$/.exec(lines[i + 1] ?? '')?.[1]
    return { message: m[1] as string, hint }
  }
  return undefined
}

export function fallbackCount (stats: BuildStats): number {
  return Object.values(stats.compiles.fallbacks).reduce((a, b) => a + b, 0)
}

/** `viaShim` false: the build ran without -toolexec (--toolexec auto), so go ran every compile itself. */
export function formatSummary (stats: BuildStats, wallMs: number, viaShim = true): string {
  const c = stats.cache
  const k = stats.compiles
  const fb = fallbackCount(stats)
  const reasons = Object.entries(k.fallbacks).map(([r, n]) => `${r} ${n}`).join(', ')
  const peers = Object.keys(c.peer.byPeer).length
  // The wall time gets waited on peers, not waitMs: go runs many at once, and their sum can pass
  // the build's own length. A node from before waitWallMs leaves the time out.
  const waited = c.peer.waitWallMs
  const peerDetail = [
    ...(c.peerHits === c.hits ? [] : [formatBytes(c.peer.bytes)]),
    ...(waited === undefined ? [] : [`${(waited / 1000).toFixed(1)} s of the build waiting on peers`])
  ]
  const fromPeers = c.peerHits > 0
    ? `, ${c.peerHits === c.hits ? 'all' : c.peerHits} from ${peers} peer${peers === 1 ? '' : 's'}${peerDetail.length === 0 ? '' : ` (${peerDetail.join(', ')})`}`
    : ''
  const rejected = c.peer.rejected.badHash + c.peer.rejected.badClaim
  const verify = c.peer.verify
  const slow = c.peer.slowLink ?? 0
  const trust = (slow > 0 ? ` · ${slow} peer entr${slow === 1 ? 'y' : 'ies'} compiled instead (slow link)` : '') +
    (rejected > 0 ? ` · ${rejected} peer entries rejected` : '') +
    (verify.sampled > 0
      ? ` · verified ${verify.confirmed}/${verify.sampled} peer entries${verify.mismatched > 0 ? `, ${verify.mismatched} MISMATCHED` : ''}` +
        ((verify.unverifiable ?? 0) > 0 ? `, ${verify.unverifiable} unverifiable (not compiles)` : '')
      : '')
  return `grid: ${stats.actions} actions · cache ${c.hits} hits (${formatBytes(c.hitBytes)})${fromPeers}, ${c.misses} misses, ${c.puts} puts${trust} · ` +
    (viaShim
      ? `compiles ${k.local} local${whyLocal(stats)}, ${k.remote} remote${remoteDetail(stats)}, ${fb} fallback${fb === 1 ? '' : 's'}${reasons === '' ? '' : ` (${reasons})`}`
      : 'compiles left to go (--toolexec auto: no peer could take one)') +
    `${c.corrupt > 0 ? ` · ${c.corrupt} corrupt blobs dropped` : ''}` +
    `${(c.edited ?? 0) > 0 ? ` · ${c.edited} outputs not stored (their sources changed during the build)` : ''} · ${(wallMs / 1000).toFixed(1)} s`
}

/** Why compiles stayed local, most common first (DESIGN §8: never distribute silently). */
function whyLocal (stats: BuildStats): string {
  const top = Object.entries(stats.compiles.localReasons).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1])
  return stats.compiles.local === 0 || top.length === 0 ? '' : ` (${top.map(([r, n]) => `${r} ${n}`).join(', ')})`
}

function remoteDetail (stats: BuildStats): string {
  const k = stats.compiles
  if (k.remote === 0 && k.races.local + k.races.duplicate === 0) return ''
  const peers = Object.keys(k.byPeer).length
  const races = k.races.local + k.races.duplicate > 0 ? `, ${k.races.local + k.races.duplicate} raced` : ''
  return ` (${peers} peer${peers === 1 ? '' : 's'}, overhead p50 ${k.overhead.p50Ms.toFixed(1)} ms${races})`
}

export function formatProgress (stats: BuildStats, total: number | undefined, elapsedMs: number, viaShim = true): string {
  const seconds = `${(elapsedMs / 1000).toFixed(0)} s`
  // Without the shim the node sees no compiles: what it sees is go's cache lookups and stores.
  if (!viaShim) return `grid: ${stats.cache.hits} cache hits · ${stats.cache.puts} outputs stored · ${seconds}`
  const done = stats.compiles.local + stats.compiles.remote
  const of = total === undefined ? '' : `/${total}`
  return `grid: ${done}${of} packages compiled · ${stats.cache.hits} cache hits · ${stats.compiles.running} compiling · ${seconds}`
}
