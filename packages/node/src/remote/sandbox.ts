/**
 * The worker's task sandboxes, under `<worker>/tasks/`, reused from one task to the next.
 *
 * A task's inputs keep their requester's absolute paths under the sandbox root (the relocation
 * recipe maps them back), so making a fresh sandbox costs a mkdir per path level, 5–8 deep, and
 * removing it as much again, before the result could leave. On a busy machine that was the
 * largest part of a remote compile's overhead (about 10 ms of every task). So a sandbox is
 * never removed: when its task ends, every file the task put there (inputs, configs, the
 * compiler's outputs) is unlinked, synchronously, and its directories stay for the next task.
 *
 * What the compiler can read does not change: it opens only the files on its command line and
 * in the importcfg/embedcfg the worker writes, all of which the task carries, and an emptied
 * sandbox holds no files. A sandbox that cannot be emptied is removed instead, and never reused.
 *
 * Directories that recur (the sources' in GOROOT and modules, the cache's shards) are what
 * reuse saves; cmd/go's `$WORK/bNNN` do not recur, since every build has a $WORK of its own. So
 * a sandbox that has gathered more than MAX_SANDBOX_DIRS directories is removed like one that
 * cannot be emptied, and the next task gets a fresh one: a node that runs for weeks does not
 * keep a directory (and its name in memory) for every task it ever ran.
 */
import { copyFileSync, linkSync, mkdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { dirname, join, sep } from 'node:path'
import { GridError } from '@grid/protocol'
import { logger } from '../log.js'
import { MAX_SANDBOX_DIRS } from './constants.js'

const log = logger('grid:worker')

export class Sandbox {
  readonly root: string
  private readonly dirs = new Set<string>()
  private readonly files = new Set<string>()

  constructor (root: string) {
    this.root = root
  }

  /** Directories made for this sandbox's tasks so far (their parents not counted). */
  get dirCount (): number {
    return this.dirs.size
  }

  /**
   * `path` (a clean absolute path) re-rooted under the sandbox. Checked once more here, where
   * the platform's path rules apply: nothing a task names may lie outside its sandbox.
   */
  at (path: string): string {
    const target = join(this.root, path)
    if (!target.startsWith(this.root + sep)) throw new GridError('GRID_ERR_TASK_REFUSED', `input path ${JSON.stringify(path.slice(0, 128))} lies outside the sandbox`)
    return target
  }

  /** Hard-links `blob` at `target` (a copy across file systems). */
  link (blob: string, target: string): void {
    this.prepare(target)
    try {
      linkSync(blob, target)
    } catch {
      copyFileSync(blob, target)
    }
  }

  write (target: string, text: string): void {
    this.prepare(target)
    writeFileSync(target, text)
  }

  /** Makes the directory for a file the compiler will write, and forgets the file at release. */
  output (target: string): string {
    this.prepare(target)
    return target
  }

  private prepare (target: string): void {
    const dir = dirname(target)
    if (!this.dirs.has(dir)) { mkdirSync(dir, { recursive: true }); this.dirs.add(dir) }
    this.files.add(target)
    // Nothing from an earlier task may stand in for this one's file: not a file, and not a
    // directory an earlier task needed at this path (emptied, but still there).
    try {
      unlinkSync(target)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'EISDIR' || code === 'EPERM') {
        rmSync(target, { recursive: true, force: true })
        for (const d of this.dirs) if (d === target || d.startsWith(target + sep)) this.dirs.delete(d)
      } else if (code !== 'ENOENT') {
        throw err
      }
    }
  }

  /** Unlinks every file this task put here; false if one would not go. */
  empty (): boolean {
    try {
      for (const f of this.files) unlinkQuiet(f)
      this.files.clear()
      return true
    } catch (err) {
      log.warn(`cannot empty sandbox ${this.root}: ${(err as Error).message}`)
      return false
    }
  }
}

export class Sandboxes {
  private readonly dir: string
  private readonly maxDirs: number
  private readonly idle: Sandbox[] = []
  private made = 0

  /** `maxDirs`: MAX_SANDBOX_DIRS unless given (tests). */
  constructor (dir: string, maxDirs = MAX_SANDBOX_DIRS) {
    this.dir = dir
    this.maxDirs = maxDirs
  }

  /** Drops whatever an earlier run of the node left (it may have stopped mid-task). */
  async reset (): Promise<void> {
    this.idle.length = 0
    await rm(this.dir, { recursive: true, force: true })
  }

  acquire (): Sandbox {
    return this.idle.pop() ?? new Sandbox(join(this.dir, `s${this.made++}`))
  }

  /** Takes back a sandbox whose task has ended: reused, unless it cannot be emptied or has gathered too many directories. */
  release (box: Sandbox): void {
    if (box.empty() && box.dirCount <= this.maxDirs) this.idle.push(box)
    else void rm(box.root, { recursive: true, force: true }).catch(() => {})
  }
}

function unlinkQuiet (path: string): void {
  try {
    unlinkSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}
