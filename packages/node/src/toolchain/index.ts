/**
 * The local Go toolchain: which `go` is on PATH, its version, GOROOT. Grid needs Go ≥ 1.24
 * (GOCACHEPROG); anything else is refused with an error naming what was found.
 */
import { execFile } from 'node:child_process'
import { GridError, MIN_GO_VERSION } from '@grid/protocol'

export interface GoToolchain {
  /** The `go` command used (as found on PATH, or $GRID_GO). */
  go: string
  /** e.g. `go1.26.8` */
  version: string
  goroot: string
  /** the platform go runs on (GOHOSTOS, GOHOSTARCH), whatever the builds target: the shim's, and pkg/tool's */
  goos: string
  goarch: string
  /** cmd/go's build cache dir (`go env GOCACHE`); the cache helper links the grid's blobs into it */
  gocache: string
  /** `go env GOFLAGS`: the environment's and go's env file's (`go env -w`), which go applies to every build */
  goflags?: string
}

/** Parses `go1.26.8`, `go1.24rc1`, `go1.25-20250101-RC00 cl/…` into [major, minor]. */
export function parseGoVersion (version: string): [number, number] | undefined {
  const m = /^go(\d+)\.(\d+)/.exec(version)
  return m === null ? undefined : [Number(m[1]), Number(m[2])]
}

export function checkGoVersion (version: string): void {
  const v = parseGoVersion(version)
  const [wantMajor, wantMinor] = MIN_GO_VERSION
  if (v === undefined || v[0] < wantMajor || (v[0] === wantMajor && v[1] < wantMinor)) {
    throw new GridError('GRID_ERR_GO_TOO_OLD', `found Go ${version}, grid needs go${wantMajor}.${wantMinor} or newer (for GOCACHEPROG)`, {
      hint: `install Go ${wantMajor}.${wantMinor}+ (https://go.dev/dl) or put a newer go first on PATH`
    })
  }
}

/** `go env` gets this long, whatever signal the caller also gives. */
const GO_ENV_TIMEOUT_MS = 30_000

export async function detectGo (options: { go?: string, env?: NodeJS.ProcessEnv, signal?: AbortSignal } = {}): Promise<GoToolchain> {
  // GRID_GO set but empty is unset, as for grid's other variables
  const fromEnv = options.go === undefined && (process.env.GRID_GO ?? '') !== ''
  const go = options.go ?? (fromEnv ? process.env.GRID_GO as string : 'go')
  const out = await new Promise<string>((resolve, reject) => {
    execFile(go, ['env', 'GOVERSION', 'GOROOT', 'GOHOSTOS', 'GOHOSTARCH', 'GOCACHE', 'GOFLAGS'], {
      env: options.env ?? process.env, timeout: GO_ENV_TIMEOUT_MS, signal: options.signal
    }, (err, stdout, stderr) => {
      if (err === null) { resolve(stdout); return }
      if (options.signal?.aborted === true) { reject(err); return } // cancelled: says nothing about go
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new GridError('GRID_ERR_GO_MISSING', fromEnv ? `no \`${go}\` command found (GRID_GO names it)` : `no \`${go}\` command found on PATH`, {
          cause: err, hint: fromEnv ? 'set GRID_GO to the path of a go 1.24+ command, or unset it to use the go on PATH' : 'install Go 1.24+ (https://go.dev/dl) and put it on PATH, or set GRID_GO to its path'
        }))
        return
      }
      // `go env GOVERSION` does not exist before Go 1.16: an old go is told by `go version`.
      // Any other go whose `go env` fails says why itself (a toolchain that go.mod asks for and
      // GOTOOLCHAIN cannot fetch, a GOROOT without its files), and plain go would fail the same.
      execFile(go, ['version'], { env: options.env ?? process.env, timeout: GO_ENV_TIMEOUT_MS }, (err2, vout) => {
        const m = /\bgo(\d+)\.(\d+)/.exec(vout)
        const [wantMajor, wantMinor] = MIN_GO_VERSION
        const old = err2 === null && (m === null || Number(m[1]) < wantMajor || (Number(m[1]) === wantMajor && Number(m[2]) < wantMinor))
        if (old) {
          reject(new GridError('GRID_ERR_GO_TOO_OLD', `\`${go} env\` failed (found: ${vout.trim()}); grid needs go${MIN_GO_VERSION.join('.')} or newer`, {
            cause: err, hint: 'install Go 1.24+ (https://go.dev/dl) or put a newer go first on PATH'
          }))
          return
        }
        reject(new GridError('GRID_ERR_GO_FAILED', `\`${go} env\` failed: ${stderr.trim() === '' ? (err as Error).message : stderr.trim()}`, {
          cause: err, hint: 'go says why: fix what it names (a go or toolchain line in go.mod that GOTOOLCHAIN cannot fetch, GOROOT); plain go fails the same way until then'
        }))
      })
    })
  })
  const [version = '', goroot = '', goos = '', goarch = '', gocache = '', goflags = ''] = out.split('\n').map(s => s.trim())
  checkGoVersion(version)
  return { go, version, goroot, goos, goarch, gocache, goflags }
}

export { compilerStamp, probeCompiler, probeToolchain, type ProbedCompiler } from './probe.js'
