/**
 * Builds the Go shim (packages/node/shim: toolexec wrapper and GOCACHEPROG helper in one binary)
 * with the user's own `go`, once per (shim source, Go version, host GOOS/GOARCH), into
 * `<cacheDir>/shim/<key>/grid-shim`. Concurrent first builds race harmlessly: each builds into
 * a temp dir and renames it into place.
 *
 * The shim runs here, whatever the user's builds are for: it is built for the host (GOHOSTOS/
 * GOHOSTARCH, which detectGo reports as the toolchain's goos/goarch) with every target setting
 * at its default, from the environment or from a `go env -w` file alike (GOENV=off), so that
 * GOARCH=arm64 or GOAMD64=v4 neither makes a binary this machine cannot run nor gives it
 * another key.
 *
 * Each upgrade of grid or of Go leaves the old key's build behind. Every use marks its key's
 * directory (mtime), and building a new one removes the keys unused for SHIM_UNUSED_MS and the
 * temp dirs of builds a crash cut short. A shell that still holds an old key's path from `grid
 * env` that long ago gets it back by running `grid env` again.
 */
import { createHash } from 'node:crypto'
import { execFile } from 'node:child_process'
import { access, chmod, copyFile, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { GridError, OUTPUT_ENV } from '@grid/protocol'
import type { GoToolchain } from '../toolchain/index.js'
import { prepareCacheDir } from '../paths.js'

/** The Go source, beside dist/ in the installed package. */
export const SHIM_SOURCE_DIR = fileURLToPath(new URL('../../shim/', import.meta.url))
export const SHIM_BINARY = process.platform === 'win32' ? 'grid-shim.exe' : 'grid-shim'

/** Another key's shim unused this long goes when a new one is built. */
export const SHIM_UNUSED_MS = 30 * 86_400_000

/** A `build-*` temp dir older than this is a crashed build's: a build takes seconds. */
const STALE_BUILD_MS = 3_600_000

/**
 * The environment the shim is built in: the host's defaults for everything that changes the
 * binary (OUTPUT_ENV, but GOROOT, which names the toolchain), no `go env -w` file, no cgo, no
 * cache helper. go's GOCACHE as the user's go reports it, which a `go env -w GOCACHE` may have
 * set, stays: the shim's compiles are cached where the user's are.
 */
function shimBuildEnv (toolchain: GoToolchain): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env, GOENV: 'off', CGO_ENABLED: '0', GOFLAGS: '-mod=mod -buildvcs=false', GOWORK: 'off', GOTOOLCHAIN: 'local', GOPROXY: 'off'
  }
  if (toolchain.gocache !== '') env.GOCACHE = toolchain.gocache
  delete env.GOCACHEPROG
  for (const name of OUTPUT_ENV) if (name !== 'GOROOT') delete env[name]
  return env
}

/** The key of a shim build: what it is built from (source, Go version) and for (the host). */
async function sourceKey (toolchain: GoToolchain): Promise<string> {
  const names = (await readdir(SHIM_SOURCE_DIR)).filter(n => (n.endsWith('.go') && !n.endsWith('_test.go')) || n === 'go.mod').sort()
  const hash = createHash('sha256')
  hash.update(`${toolchain.version} ${toolchain.goos}/${toolchain.goarch}\n`)
  for (const name of names) {
    hash.update(`${name}\n`)
    hash.update(await readFile(join(SHIM_SOURCE_DIR, name)))
  }
  return hash.digest('hex').slice(0, 16)
}

/**
 * Returns the path of a shim binary built for this toolchain, building it if needed. The cache
 * dir not taking it (a full disk) is GRID_ERR_CACHE_OPEN, as for the rest of the cache: `grid
 * build` then runs as plain go. A failed `go build` of it is GRID_ERR_SHIM_BUILD.
 */
export async function ensureShim (cacheDir: string, toolchain: GoToolchain, options: { signal?: AbortSignal } = {}): Promise<string> {
  await prepareCacheDir(cacheDir)
  const env = shimBuildEnv(toolchain)
  const dir = join(cacheDir, 'shim', await sourceKey(toolchain))
  const binary = join(dir, SHIM_BINARY)
  try {
    await access(binary)
    if (await tamperable(dir, binary)) {
      // cmd/go runs this file for every tool: one that another user could have replaced (made
      // when the cache dir was open to others) is built anew, as if it were not there.
      await rm(dir, { recursive: true, force: true })
    } else {
      const now = new Date()
      await utimes(dir, now, now).catch(() => {}) // in use: not to be pruned
      return binary
    }
  } catch {}
  // Built where go makes its own temp files (GOTMPDIR, else TMPDIR), then put in the cache dir:
  // a go build that failed for want of room in the cache dir would look like a shim that does
  // not build.
  const goTmp = env.GOTMPDIR !== undefined && env.GOTMPDIR !== '' ? env.GOTMPDIR : tmpdir()
  const work = await mkdtemp(join(goTmp, 'grid-shim-')).catch((err: Error) => {
    throw new GridError('GRID_ERR_SHIM_BUILD', `building the shim: go's temp dir ${goTmp} cannot be used: ${err.message}`, { cause: err, hint: 'set GOTMPDIR (or TMPDIR) to a directory you can write' })
  })
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(toolchain.go, ['build', '-trimpath', '-ldflags=-s -w', '-o', join(work, SHIM_BINARY), '.'], {
        cwd: SHIM_SOURCE_DIR, env, timeout: 120_000, signal: options.signal
      }, (err, _stdout, stderr) => {
        if (err === null) resolve()
        else reject(new GridError('GRID_ERR_SHIM_BUILD', `building the shim with ${toolchain.go} (${toolchain.version}) failed: ${stderr.trim() || err.message}`, { cause: err, hint: SHIM_BUILD_HINT }))
      })
    })
    const tmp = await cacheTemp(cacheDir, dir)
    try {
      await copyFile(join(work, SHIM_BINARY), join(tmp, SHIM_BINARY)).catch((err: Error) => { throw cannotWrite(cacheDir, err) })
      await chmod(join(tmp, SHIM_BINARY), 0o755) // go build's mode follows the umask: 0775 under 0002 (see tamperable)
      await publish(tmp, cacheDir, dir)
    } finally {
      await rm(tmp, { recursive: true, force: true })
    }
  } finally {
    await rm(work, { recursive: true, force: true })
  }
  await pruneShims(join(cacheDir, 'shim'), dirname(binary))
  return binary
}

/**
 * Whether another user owns, or could write, the shim or its dir: the cache dir is private now
 * (prepareCacheDir), but one an older grid made under umask 0002 was writable by the group.
 */
async function tamperable (dir: string, binary: string): Promise<boolean> {
  if (process.getuid === undefined) return false // Windows: no owners and modes
  const uid = process.getuid()
  for (const path of [dir, binary]) {
    const st = await lstat(path)
    if (st.uid !== uid || (st.mode & 0o022) !== 0 || st.isSymbolicLink()) return true
  }
  return false
}

/** A temp dir beside `dir` in the cache, for a shim to be renamed into place. */
async function cacheTemp (cacheDir: string, dir: string): Promise<string> {
  try {
    await mkdir(dirname(dir), { recursive: true })
    return await mkdtemp(join(dirname(dir), 'build-'))
  } catch (err) {
    throw cannotWrite(cacheDir, err as Error)
  }
}

/** Renames a temp dir holding a built shim into place. */
async function publish (tmp: string, cacheDir: string, dir: string): Promise<void> {
  await rename(tmp, dir).catch(async (err: NodeJS.ErrnoException) => {
    // Someone else finished first: theirs is as good as ours.
    if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw cannotWrite(cacheDir, err)
  })
}

/** What to check when go does not build the shim (a small program of the standard library only). */
const SHIM_BUILD_HINT = 'go says why: check that this go builds a small program (GOROOT, GOFLAGS, GOTOOLCHAIN); until it builds the shim, grid build runs as plain go'

function cannotWrite (cacheDir: string, err: Error): GridError {
  return new GridError('GRID_ERR_CACHE_OPEN', `cannot write grid's shim into the cache dir ${cacheDir}: ${err.message}`, {
    cause: err,
    hint: 'free some space on its disk (grid cache gc --max-size trims the cache), or pass another cache dir with --cache DIR (or set GRID_CACHE)'
  })
}

/**
 * Removes from `shimDir` the keys' dirs unused for SHIM_UNUSED_MS, except `keep`, and stale
 * temp dirs of builds. Never fails: a dir another process removes or uses meanwhile is skipped.
 */
export async function pruneShims (shimDir: string, keep: string, now = Date.now()): Promise<string[]> {
  const removed: string[] = []
  for (const name of await readdir(shimDir).catch(() => [])) {
    const path = join(shimDir, name)
    if (path === keep) continue
    const st = await stat(path).catch(() => undefined)
    if (st === undefined || !st.isDirectory()) continue
    if (now - st.mtimeMs < (name.startsWith('build-') ? STALE_BUILD_MS : SHIM_UNUSED_MS)) continue
    await rm(path, { recursive: true, force: true }).then(() => removed.push(name), () => {})
  }
  return removed
}
