/** `grid cache stats|gc|verify`: through the running node, or on the cache directly if none runs. */
import { GC_SPARES_RECENT_MS } from '@grid/node'
import { formatBytes, type CacheStats, type GcResult, type VerifyResult } from '@grid/protocol'
import type { GlobalOptions } from '../options.js'
import { noArguments, parseFlags, sizeFlag, usageError } from '../options.js'
import type { Output } from '../output.js'
import { formatCache } from '../format.js'
import { viaNodeOrCache } from './status.js'

export const CACHE_HELP = `usage: grid [global options] cache <subcommand>

  stats                  entries, blobs and bytes in the cache, how many of its entries
                         peers' workers compiled (by peer), and the inputs of peers'
                         compiles this node keeps beside it (each 3 days from its last use;
                         gc does not trim them)
  gc --max-size SIZE     trim to SIZE (e.g. 10G, 500M), least recently used first
  verify                 re-hash every blob; drop corrupt blobs and entries whose blob is gone
                         (exits 1 if any blob was corrupt or could not be read)`

export async function cache (args: string[], options: GlobalOptions, output: Output): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'stats': {
      noArguments('cache stats', parseFlags('cache stats', rest, {}).positional)
      const stats = await viaNodeOrCache(options, async c => (await c.request({ type: 'cache-stats' })).stats, async c => await (await import('@grid/node/server')).cacheStats(c))
      output.out(options.json ? JSON.stringify(stats) : formatCache(stats))
      return 0
    }
    case 'gc': {
      const { flags, positional } = parseFlags('cache gc', rest, { 'max-size': 'string' })
      noArguments('cache gc', positional)
      if (flags['max-size'] === undefined) throw usageError('grid cache gc needs --max-size SIZE', 'e.g. grid cache gc --max-size 10G')
      const maxBytes = sizeFlag(flags['max-size'], '--max-size')
      const result = await viaNodeOrCache(options, async c => (await c.request({ type: 'cache-gc', maxBytes })).result, async c => await (await import('@grid/node/server')).cacheGc(c, maxBytes))
      output.out(options.json ? JSON.stringify(result) : formatGc(result))
      return 0
    }
    case 'verify': {
      noArguments('cache verify', parseFlags('cache verify', rest, {}).positional)
      const result = await viaNodeOrCache(options, async c => (await c.request({ type: 'cache-verify' })).result, async c => await c.verify())
      output.out(options.json ? JSON.stringify(result) : formatVerify(result))
      return result.corrupt > 0 || (result.unreadable ?? 0) > 0 ? 1 : 0
    }
    default:
      throw usageError(sub === undefined ? 'grid cache needs a subcommand' : `unknown cache subcommand ${sub}`, 'run `grid cache --help`')
  }
}

function formatGc (r: GcResult): string {
  // Right after a build filled the disk every blob is that recent: say why they stay, and when they can go.
  const spared = r.spared !== undefined && r.spared.blobs > 0
    ? `\nkept ${r.spared.blobs} blobs (${formatBytes(r.spared.bytes)}) past the size: in use by a running build, or written in the last ${GC_SPARES_RECENT_MS / 60_000} minutes, which a build may be reading; run grid cache gc again once they are older`
    : ''
  return `removed ${r.removedEntries} entries, ${r.removedBlobs} blobs, ${formatBytes(r.removedBytes)}${spared}\n${formatCache(r.stats)}`
}

function formatVerify (r: VerifyResult): string {
  const unreadable = (r.unreadable ?? 0) > 0 ? `; ${r.unreadable ?? 0} could not be read (left as they are: see the log, and run verify again)` : ''
  return `checked ${r.checked} blobs: ${r.corrupt} corrupt (removed), ${r.removedEntries} entries dropped (${r.missing} without a valid blob)${unreadable}`
}

export type { CacheStats }
