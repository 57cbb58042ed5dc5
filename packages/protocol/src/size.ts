/** Human sizes: `parseSize('10G')`, `formatBytes(1536)`. Binary units (KiB = 1024). */
import { GridError } from './errors.js'

const UNITS: Record<string, number> = {
  '': 1, b: 1, k: 2 ** 10, kb: 2 ** 10, kib: 2 ** 10, m: 2 ** 20, mb: 2 ** 20, mib: 2 ** 20,
  g: 2 ** 30, gb: 2 ** 30, gib: 2 ** 30, t: 2 ** 40, tb: 2 ** 40, tib: 2 ** 40
}

export function parseSize (text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  const unit = UNITS[(match?.[2] ?? '').toLowerCase()]
  if (match === null || unit === undefined) {
    throw new GridError('GRID_ERR_USAGE', `not a size: ${JSON.stringify(text)}`, { hint: 'use a number with an optional unit, e.g. 500M or 10G' })
  }
  return Math.floor(Number(match[1]) * unit)
}

export function formatBytes (n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`
}

/**
 * A link's speed from its time per byte (ms), in MB/s (decimal, as links are sold): '>1000 MB/s'
 * beyond a gigabyte a second, where a probe on a LAN no longer tells links apart.
 */
export function formatLinkRate (msPerByte: number): string {
  const mbs = msPerByte > 0 ? 1 / msPerByte / 1000 : Infinity
  return mbs >= 1000 ? '>1000 MB/s' : `${mbs.toFixed(mbs < 10 ? 1 : 0)} MB/s`
}
