/**
 * Sources changed during the build: an output is stored only under the ActionID of what it was
 * built from.
 *
 * cmd/go hashes a package's files into its action ID, then runs cgo, asm and the compiler, which
 * read the files again. A file saved in between (an editor, `git checkout`, a generator) gives an
 * archive of the new content under the ActionID of the old, and cmd/go puts it so (it checks
 * nothing: plain go keeps such an entry in its own GOCACHE, golang/go has no check for it). When
 * the old content comes back (an undo, a checkout), that entry is a hit, and the build links
 * code that is not in its sources. Through the grid the same entry would reach every member of
 * the mesh, and a peer's compile widens the window (the node reads the files when it ships them).
 *
 * So each compile of a build is remembered by the action ID in its `-buildid` (`register`), with
 * the files it reads: its Go files outside cmd/go's `$WORK`, the files it embeds, and, when cgo,
 * cover or asm work from the package's files (generated Go files in `$WORK`, `-symabis`), every
 * file in the package's directory. When cmd/go puts that action's output (`changed`), those files
 * are stat'ed: one whose inode changed (ctime) after the build began, or that is gone, may no
 * longer be what cmd/go hashed, and the output is not stored (counted in `cache.edited`). The
 * next build hashes the files again and compiles what they then hold. ctime, not mtime: no
 * user-level tool sets it back. Kernels stamp files from a clock that runs up to a tick behind,
 * hence `FILE_CLOCK_SLACK_MS`. A false alarm (a file saved just before the build began, or after
 * its compile) costs one compile of that package the next time.
 */
import { readFile, readdir, stat } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import { compileArgs } from '../remote/parse.js'

/**
 * How far a file's ctime (or mtime) may lag the moment it was changed: Linux stamps files from its coarse
 * clock, up to one tick (10 ms at HZ=100) behind the time Date.now() reads.
 */
export const FILE_CLOCK_SLACK_MS = 50

/**
 * How long before a helper's `cache-open` (under `grid env`, where no `build-begin` came first)
 * its go command may have hashed files, for a helper that does not say when it started (an
 * older grid's): cmd/go starts the helper before its first action, and the helper connects to
 * the node while cmd/go goes on.
 */
export const HELPER_OPEN_MS = 1000

/** What a byte that is not UTF-8 becomes in a string decoded from it. */
const LOST = '\uFFFD'

/**
 * Whether a compile's directory or arguments hold bytes that are not UTF-8 (a checkout under a
 * Latin-1 name): the shim sends them as strings, and they arrive with U+FFFD in place of those
 * bytes, paths no file system call here can open (nor a process be started in). Such a compile
 * runs where cmd/go runs it. cmd/go starts every compile in the go command's own working
 * directory, so a build started in such a directory keeps all of its compiles here.
 */
export function notUtf8 (req: { args: string[], cwd: string }): boolean {
  return req.cwd.includes(LOST) || req.args.some(a => a.includes(LOST))
}

export class BuildSources {
  /** the files each compile reads (listed once its embedcfg and package directory are read), by action */
  private readonly compiles = new Map<string, Promise<string[]>>()
  /** every action a compile of this build named in its `-buildid`, checked or not (`compiled`) */
  private readonly actions = new Set<string>()
  /** each registered compile's action, by its request's own argument list (`ranOn`) */
  private readonly actionOf = new WeakMap<string[], string>()
  /** the peer whose worker compiled each action that ran on one (`workerOf`) */
  private readonly workers = new Map<string, string>()

  /** @param since when cmd/go may have begun hashing this build's files (ms since the epoch) */
  constructor (private since: number) {}

  /**
   * The build's cache helper started at `ms`: cmd/go hashed no file before, and what it wrote
   * before (a module it downloaded into the module cache as it loaded the packages) is not a
   * change to what it hashed. Never moves the start earlier.
   */
  helperStarted (ms: number): void {
    this.since = Math.max(this.since, ms)
  }

  /**
   * Remembers the files a compile reads, by the action ID in its `-buildid`. A compile without
   * one (not cmd/go's) is not remembered, nor one with a file whose path is not UTF-8
   * (`notUtf8`): this node could not open it, so that output is stored unchecked, as plain go
   * stores it, rather than never. Its action is noted as a compile's all the same (`compiled`).
   */
  register (args: string[], cwd: string): void {
    const parsed = compileFiles(args, cwd)
    if (parsed === undefined) return
    this.actions.add(parsed.action)
    this.actionOf.set(args, parsed.action)
    if ([...parsed.goFiles, ...parsed.dirs, parsed.embedcfg ?? ''].some(p => p.includes(LOST))) return
    const files = listFiles(parsed)
    files.catch(() => {}) // awaited by changed(), if that action is put
    this.compiles.set(parsed.action, files)
  }

  /**
   * The compile registered with these very arguments ran on `peer`'s worker: the entry cmd/go
   * puts for its output names that worker (docs/cache.md, invariant 5).
   */
  ranOn (args: string[], peer: string): void {
    const action = this.actionOf.get(args)
    if (action !== undefined) this.workers.set(action, peer)
  }

  /** The peer whose worker compiled this action, if one did (`ranOn`). */
  workerOf (actionId: Uint8Array): string | undefined {
    return this.workers.get(buildIdAction(actionId))
  }

  /**
   * Whether a compile of this build named this action in its `-buildid`: its output is the
   * compiler's, deterministic, where cmd/go's other entries (a test's result, with its elapsed
   * time) may differ from run to run (--verify compares only those, peercache.ts `checkPut`).
   */
  compiled (actionId: Uint8Array): boolean {
    return this.actions.has(buildIdAction(actionId))
  }

  /**
   * For an output cmd/go puts: the first file its compile read that changed since the build
   * began (or is gone), else undefined. An action no compile of this build named is undefined.
   */
  async changed (actionId: Uint8Array): Promise<string | undefined> {
    const key = buildIdAction(actionId)
    const listed = this.compiles.get(key)
    if (listed === undefined) return undefined
    this.compiles.delete(key)
    // an embedcfg that could not be read is the compile's failure, which cmd/go does not put
    const files = await listed.catch(() => [])
    const limit = this.since - FILE_CLOCK_SLACK_MS
    const changed = await Promise.all(files.map(async file => {
      try {
        return (await stat(file)).ctimeMs >= limit ? file : undefined
      } catch {
        return file // gone, or replaced by what we cannot read: not what was hashed
      }
    }))
    return changed.find(f => f !== undefined)
  }
}

/**
 * cmd/go's HashToString (cmd/internal/buildid): the first 15 bytes of an action ID in its own
 * base64 alphabet, as it writes the ID into `-buildid A/A`.
 */
export function buildIdAction (actionId: Uint8Array): string {
  const b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  let out = ''
  for (let i = 0; i < 5; i++) {
    const v = ((actionId[3 * i] ?? 0) << 16) | ((actionId[3 * i + 1] ?? 0) << 8) | (actionId[3 * i + 2] ?? 0)
    out += (b64[(v >> 18) & 0x3f] as string) + (b64[(v >> 12) & 0x3f] as string) + (b64[(v >> 6) & 0x3f] as string) + (b64[v & 0x3f] as string)
  }
  return out
}

export interface CompileFiles {
  /** the action part of `-buildid` */
  action: string
  /** Go files outside `$WORK` and the module cache, absolute */
  goFiles: string[]
  /** the `-embedcfg` file, if any */
  embedcfg: string | undefined
  /** package directories to list whole: cgo, cover or asm read files the compile is not given */
  dirs: string[]
}

/**
 * What a compile command line says it reads. `$WORK` is the parent of the compile's objdir (the
 * directory of `-o`); the package's directory is the prefix of a `-trimpath` rule outside it
 * (cmd/go's `dir=>importpath` under -trimpath), else the directory of its Go files.
 */
export function compileFiles (args: string[], cwd: string): CompileFiles | undefined {
  let action: string | undefined
  let out: string | undefined
  let embedcfg: string | undefined
  let trimpath = ''
  let generated = false
  const sources: string[] = []
  for (const a of compileArgs(args)) {
    if (a.kind === 'file') {
      if (a.arg.endsWith('.go')) sources.push(resolve(cwd, a.arg))
      continue
    }
    const v = a.value
    if (v === undefined) continue // a boolean flag, or a flag's missing value at the end
    if (a.name === '-buildid') action = v.split('/')[0]
    else if (a.name === '-o') out = resolve(cwd, v)
    else if (a.name === '-embedcfg') embedcfg = resolve(cwd, v)
    else if (a.name === '-trimpath') trimpath = v
    else if (a.name === '-symabis' || a.name === '-asmhdr') generated = true // asm reads the package's .s files
  }
  if (action === undefined || action === '' || out === undefined) return undefined
  const work = dirname(dirname(out))
  const inWork = (p: string): boolean => p === work || p.startsWith(work + sep)
  const ours = sources.filter(f => !inWork(f))
  if (ours.length < sources.length) generated = true // cgo's or cover's Go files
  const goFiles = ours.filter(f => !inModuleCache(f))
  const dirs = new Set<string>()
  if (generated) {
    for (const rule of trimpath.split(';')) {
      const at = rule.lastIndexOf('=>')
      const prefix = at < 0 ? rule : rule.slice(0, at)
      if (prefix.startsWith('/') && !inWork(prefix) && !inModuleCache(prefix)) dirs.add(prefix)
    }
    for (const f of goFiles) dirs.add(dirname(f))
  }
  return { action, goFiles, embedcfg, dirs: [...dirs] }
}

/**
 * A directory of a module version in the module cache (`…/example.com/m@v1.2.0/…`): written
 * once, as cmd/go extracts a download it checked against go.sum, which it often does while it
 * loads the build's packages, after its cache helper started. Such files are not checked: their
 * ctime is the download's, not an edit's.
 */
const MODULE_VERSION_DIR = /\/[^/@]+@v[0-9][^/]*(\/|$)/

function inModuleCache (path: string): boolean {
  return MODULE_VERSION_DIR.test(path)
}

/** Every file to check: the Go files, the embedded ones, and the regular files of `dirs`. */
async function listFiles (c: CompileFiles): Promise<string[]> {
  const files = new Set(c.goFiles)
  if (c.embedcfg !== undefined) {
    const cfg = JSON.parse(await readFile(c.embedcfg, 'utf8')) as { Files?: Record<string, string> }
    for (const file of Object.values(cfg.Files ?? {})) if (typeof file === 'string') files.add(file)
  }
  for (const dir of c.dirs) {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
    for (const e of entries) if (e.isFile()) files.add(join(dir, e.name))
  }
  return [...files].filter(f => !inModuleCache(f))
}
