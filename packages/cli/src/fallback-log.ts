/**
 * The notes the shims of a `grid build` leave in TMPDIR: its fallback log
 * (`grid-fallbacks-<grid's pid>-<24 random hex>`, a line per compile a shim ran itself, naming
 * why) and the mark a shim leaves beside it when it finds the node hung (`<log>.stalled`).
 * Under `grid env` a shim marks a hung node as `grid-node-stalled-<go's pid>`. grid build removes
 * its own as it ends; those of a grid killed first (SIGKILL, a power cut) are swept by a later
 * build, at most once a day (sweepIfDue).
 *
 * TMPDIR may be shared by several users. The random part keeps a log's name from being guessed
 * (no one can plant a file or a link at it first). A sweep removes only what is certainly a
 * finished build's: a regular file (lstat, no link followed) of this user's, named as above,
 * whose pid names no live process and which nobody has written for LEFTOVER_AGE_MS (an older
 * grid's note, which names no pid: a day, PIDLESS_LEFTOVER_AGE_MS).
 *
 * Why both checks. A pid names the same process to everyone in one pid namespace: while a build
 * runs, its grid (or go, under grid env) is alive, and its notes stay. A pid reused since by
 * another process keeps a leftover only until that process ends. The age covers what the pid
 * cannot: a build in another pid namespace sharing this TMPDIR (a container), whose pid means
 * nothing here, and the go of a killed grid, which runs on and whose shims still write. An hour
 * untouched, a log is read by nobody (only the grid that named it reads it), and a stalled mark
 * has expired (the shims heed one for 10 minutes, packages/node/shim/main.go).
 */
import { randomBytes } from 'node:crypto'
import { lstat, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { processExists } from './pid.js'

/** A note untouched this long, of a process that is gone, is a leftover (see above). */
export const LEFTOVER_AGE_MS = 60 * 60_000
/**
 * How often grid build sweeps TMPDIR: a readdir of a shared TMPDIR may list thousands of
 * entries, and leftovers are rare (a killed grid) and small, so a day's wait costs nothing.
 * Builds in between pay one stat, of the stamp.
 */
export const SWEEP_EVERY_MS = 24 * 60 * 60_000
/** In the cache dir: its mtime is when a build last swept */
export const SWEEP_STAMP = 'tmp-swept'

/** A note's name, and the pid it belongs to */
const NOTES = [/^grid-fallbacks-(\d+)-[0-9a-f]{24}(?:\.stalled)?$/, /^grid-node-stalled-(\d+)$/]
/**
 * A note of a grid from before notes named their pid (`grid-fallbacks-<24 hex>`): no process to
 * ask, so only its age tells, and a longer one (a day untouched) than LEFTOVER_AGE_MS.
 */
const PIDLESS_NOTE = /^grid-fallbacks-[0-9a-f]{24}(?:\.stalled)?$/
export const PIDLESS_LEFTOVER_AGE_MS = 24 * 60 * 60_000

/** A new fallback log for this process's build, in TMPDIR. */
export function newFallbackLog (dir = tmpdir()): string {
  return join(dir, `grid-fallbacks-${process.pid}-${randomBytes(12).toString('hex')}`)
}

/** What the shims wrote to `log`: how many compiles they ran themselves, by reason. */
export async function readFallbacks (log: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {}
  const text = await readFile(log, 'utf8').catch(() => '')
  for (const reason of text.split('\n')) if (reason !== '') counts[reason] = (counts[reason] ?? 0) + 1
  return counts
}

/**
 * Removes a build's log and its stalled mark. One that could not be made (TMPDIR full, or not a
 * directory) is not there to remove: never fails.
 */
export async function removeFallbackLog (log: string): Promise<void> {
  await rm(log, { force: true }).catch(() => {})
  await rm(`${log}.stalled`, { force: true }).catch(() => {})
}

/**
 * Sweeps `dir` (TMPDIR) when the last sweep was SWEEP_EVERY_MS ago or more, by the stamp in the
 * cache dir. Never fails: with no stamp to write (a cache dir that takes no file) it does not
 * sweep, rather than on every build.
 */
export async function sweepIfDue (cacheDir: string, dir = tmpdir(), now = Date.now()): Promise<void> {
  const stamp = join(cacheDir, SWEEP_STAMP)
  const last = await stat(stamp).then(st => st.mtimeMs, () => undefined)
  // a stamp from the future (the clock was set back) would hold off the sweep for as long
  if (last !== undefined && last <= now && now - last < SWEEP_EVERY_MS) return
  try {
    await writeFile(stamp, '')
  } catch {
    return
  }
  await sweepLeftovers(dir, now).catch(() => {})
}

/** Removes the notes in `dir` of builds that are over (see the top of this file); returns their names. */
export async function sweepLeftovers (dir: string, now = Date.now()): Promise<string[]> {
  const uid = process.getuid?.()
  if (uid === undefined) return [] // no owners to check (Windows)
  const removed: string[] = []
  for (const name of await readdir(dir)) {
    const pidless = PIDLESS_NOTE.test(name)
    if (!pidless) {
      const pid = Number(NOTES.map(re => re.exec(name)?.[1]).find(p => p !== undefined))
      if (!Number.isSafeInteger(pid) || pid <= 0 || processExists(pid)) continue
    }
    const path = join(dir, name)
    const st = await lstat(path).catch(() => undefined)
    const age = pidless ? PIDLESS_LEFTOVER_AGE_MS : LEFTOVER_AGE_MS
    if (st === undefined || !st.isFile() || st.uid !== uid || now - st.mtimeMs < age) continue
    // unlink never follows a link: were the file swapped for one since the lstat (only its
    // owner, this user, can in a sticky TMPDIR), the link would go, not what it names
    await unlink(path).then(() => removed.push(name), () => {})
  }
  return removed
}
