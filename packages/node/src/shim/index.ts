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
import { access, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises'
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

/** Returns the path of a shim binary built for this toolchain, building it if needed. */
export async function ensureShim (cacheDir: string, toolchain: GoToolchain, options: { signal?: AbortSignal } = {}): Promise<string> {
  await prepareCacheDir(cacheDir)
  const env = shimBuildEnv(toolchain)
  const dir = join(cacheDir, 'shim', await sourceKey(toolchain))
  const binary = join(dir, SHIM_BINARY)
  try {
    await access(binary)
    const now = new Date()
    await utimes(dir, now, now).catch(() => {}) // in use: not to be pruned
    return binary
  } catch {}
  await mkdir(join(cacheDir, 'shim'), { recursive: true })
  const tmp = await mkdtemp(join(cacheDir, 'shim', 'build-'))
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(toolchain.go, ['build', '-trimpath', '-ldflags=-s -w', '-o', join(tmp, SHIM_BINARY), '.'], {
        cwd: SHIM_SOURCE_DIR, env, signal: options.signal ?? AbortSignal.timeout(120_000)
      }, (err, _stdout, stderr) => {
        if (err === null) resolve()
        else reject(new GridError('GRID_ERR_SHIM_BUILD', `building the shim with ${toolchain.go} (${toolchain.version}) failed: ${stderr.trim() || err.message}`, { cause: err }))
      })
    })
    await rename(tmp, dir).catch(async (err: NodeJS.ErrnoException) => {
      // Someone else finished first: theirs is as good as ours.
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err
    })
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
  await pruneShims(join(cacheDir, 'shim'), dirname(binary))
  return binary
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
