// The notes grid build's shims leave in TMPDIR, and the sweep that removes those of builds killed
// before their end: real files in a directory of the test's own, and a real process, killed.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chown, lutimes, mkdir, readdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { describe, it } from 'node:test'
import { LEFTOVER_AGE_MS, PIDLESS_LEFTOVER_AGE_MS, SWEEP_EVERY_MS, SWEEP_STAMP, newFallbackLog, sweepIfDue, sweepLeftovers } from '@grid/cli/fallback-log'
import { tempDir } from '../helpers/index.js'

/** The pid of a process that ran and was killed (SIGKILL), reaped: no process has it now. */
async function killedPid (): Promise<number> {
  const child = spawn('sleep', ['600'], { stdio: 'ignore' })
  await new Promise<void>((resolve, reject) => { child.once('spawn', resolve); child.once('error', reject) })
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  child.kill('SIGKILL')
  await exited
  return child.pid as number
}

const hex = (): string => randomBytes(12).toString('hex')

/** A file written `ageMs` ago. */
async function note (path: string, ageMs: number, text = 'node-unreachable\n'): Promise<string> {
  await writeFile(path, text)
  const then = new Date(Date.now() - ageMs)
  await utimes(path, then, then)
  return basename(path)
}

describe('grid build\'s notes in TMPDIR', () => {
  it('a fallback log is named by this process\'s pid and a random part', async (t) => {
    const dir = await tempDir(t)
    const a = newFallbackLog(dir)
    assert.match(basename(a), new RegExp(`^grid-fallbacks-${process.pid}-[0-9a-f]{24}$`))
    assert.notEqual(newFallbackLog(dir), a)
  })

  it('a sweep removes only the regular files, of this user, of builds whose process is gone and that nobody wrote for an hour (an older grid\'s, naming no pid: a day)', async (t) => {
    const dir = await tempDir(t)
    const dead = await killedPid()
    const old = LEFTOVER_AGE_MS + 60_000
    const log = await note(join(dir, `grid-fallbacks-${dead}-${hex()}`), old)
    const gone = [
      log,
      await note(join(dir, `${log}.stalled`), old, ''),
      await note(join(dir, `grid-node-stalled-${dead}`), old, ''), // a hung node's mark under grid env, by go's pid
      // an older grid's, which names no pid: by its age alone, a day
      await note(join(dir, `grid-fallbacks-${hex()}`), PIDLESS_LEFTOVER_AGE_MS + 60_000),
      await note(join(dir, `grid-fallbacks-${hex()}.stalled`), PIDLESS_LEFTOVER_AGE_MS + 60_000, '')
    ]
    const kept = [
      // a build still running: this process's
      await note(join(dir, `grid-fallbacks-${process.pid}-${hex()}`), old),
      await note(join(dir, `grid-node-stalled-${process.pid}`), old, ''),
      // written less than an hour ago: the go of a killed grid may still run (or the pid be another namespace's)
      await note(join(dir, `grid-fallbacks-${dead}-${hex()}`), LEFTOVER_AGE_MS - 60_000),
      // an older grid's (no pid) written less than a day ago
      await note(join(dir, `grid-fallbacks-${hex()}`), PIDLESS_LEFTOVER_AGE_MS - 60_000),
      // not grid's own names: a name with no random part, anything else
      await note(join(dir, `grid-fallbacks-${dead}-notes`), old),
      await note(join(dir, `grid-fallbacks-0-${hex()}`), old),
      await note(join(dir, 'notes.txt'), old)
    ]
    // a link at such a name: neither it nor what it names is touched
    const target = await note(join(dir, 'target'), old, 'someone else\'s\n')
    const link = `grid-fallbacks-${dead}-${hex()}`
    await symlink(join(dir, target), join(dir, link))
    await lutimes(join(dir, link), new Date(0), new Date(0))
    // a directory at such a name
    const sub = `grid-fallbacks-${dead}-${hex()}`
    await mkdir(join(dir, sub))
    await utimes(join(dir, sub), new Date(0), new Date(0))
    kept.push(target, link, sub)
    // another user's (only root can make one here)
    if (process.getuid?.() === 0) {
      const theirs = await note(join(dir, `grid-fallbacks-${dead}-${hex()}`), old)
      await chown(join(dir, theirs), 65534, 65534)
      const then = new Date(Date.now() - old)
      await utimes(join(dir, theirs), then, then)
      kept.push(theirs)
    }

    assert.deepEqual((await sweepLeftovers(dir)).sort(), gone.sort())
    assert.deepEqual((await readdir(dir)).sort(), kept.sort())
    assert.equal(await readFile(join(dir, target), 'utf8'), 'someone else\'s\n')
  })

  it('grid build sweeps once a day, by a stamp in the cache dir, and not at all when it cannot write the stamp', async (t) => {
    const dir = await tempDir(t)
    const cacheDir = join(dir, 'cache')
    const tmp = join(dir, 'tmp')
    await mkdir(cacheDir)
    await mkdir(tmp)
    const dead = await killedPid()
    const leftover = (): Promise<string> => note(join(tmp, `grid-fallbacks-${dead}-${hex()}`), LEFTOVER_AGE_MS + 60_000)

    const first = await leftover()
    await sweepIfDue(cacheDir, tmp) // no stamp yet: due
    assert.deepEqual(await readdir(tmp), [])
    const stamped = (await stat(join(cacheDir, SWEEP_STAMP))).mtimeMs

    const second = await leftover()
    await sweepIfDue(cacheDir, tmp) // swept a moment ago: one stat, no readdir
    assert.deepEqual(await readdir(tmp), [second])
    await sweepIfDue(cacheDir, tmp, stamped + SWEEP_EVERY_MS) // a day later
    assert.deepEqual(await readdir(tmp), [])
    assert.notEqual(first, second)

    // a cache dir that takes no stamp: no sweep, rather than one per build
    const third = await leftover()
    await sweepIfDue(join(dir, 'no-such-dir'), tmp)
    assert.deepEqual(await readdir(tmp), [third])
  })
})
