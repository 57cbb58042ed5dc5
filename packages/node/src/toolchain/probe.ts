/**
 * What a node advertises about its toolchain (shared/DESIGN.md §4): the release, the
 * compiler's `-V=full` line, GOEXPERIMENT, and a canary: the sha256 of compiling a fixed tiny
 * package with fixed arguments for a fixed target. Release toolchains built anywhere give the
 * same canary; a patched compiler behind an unchanged version string does not.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { statSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { isAbsolute, join } from 'node:path'
import type { ToolchainInfo } from '@grid/protocol'
import type { GoToolchain } from './index.js'

/**
 * The canary package. Its archive (export data with the inline bodies, and code) depends on
 * what the compiler decides about each construct here, so a compiler that decides otherwise on
 * any of them gives another canary. A canary of generics and one loop let through a compiler
 * whose inlining budget was halved (80 to 40) and one that inlines no function with a closure:
 * hence functions of growing inlining cost and their callers, escapes, closures, interfaces,
 * maps, string switches and defers. Changing this source changes every node's canary: nodes of
 * grid versions before and after it share neither compiles nor cache entries (docs/mesh.md).
 */
const CANARY_SOURCE = `package canary

type Pair[T any] struct{ A, B T }

func Swap[T any](p Pair[T]) Pair[T] { return Pair[T]{p.B, p.A} }

func Sum(xs []int) (n int) {
	for _, x := range xs {
		n += x
	}
	return n
}

// Inlining: functions of growing cost, and their callers.
func c1(a, b int) int { return a*b + a - b }

func c2(a, b, c int) int {
	if a > b {
		return c1(a, c) ^ b
	}
	return c1(b, c) | a
}

func c3(a, b, c, d int) int {
	x := c2(a, b, c)
	for i := 0; i < d; i++ {
		x += i * a
	}
	return x - c1(d, b)
}

func c4(xs []int, k int) int {
	n := 0
	for i, x := range xs {
		if x%k == 0 {
			n += c3(x, i, k, 3)
		} else {
			n -= c2(x, i, k)
		}
	}
	return n
}

func Use(xs []int, k int) int { return c1(k, 2) + c2(k, 3, 4) + c3(k, 1, 2, 3) + c4(xs, k) }

// Escapes, interfaces, defers, maps, string switches, closures.
type Shape interface{ Area() float64 }

type Rect struct{ W, H float64 }

func (r Rect) Area() float64 { return r.W * r.H }

func Areas(n int) (total float64) {
	defer func() { total += 1 }()
	shapes := make([]Shape, 0, n)
	for i := 0; i < n; i++ {
		shapes = append(shapes, Rect{float64(i), 2})
	}
	for _, s := range shapes {
		total += s.Area()
	}
	return total
}

func Count(words []string) map[string]int {
	m := map[string]int{}
	for _, w := range words {
		m[w+"!"]++
	}
	return m
}

func Kind(s string) int {
	switch s {
	case "alpha", "beta":
		return 1
	case "gamma":
		return 2
	case "delta", "epsilon", "zeta":
		return 3
	}
	return len(s)
}

func Adder() func(int) int {
	total := 0
	return func(x int) int { total += x; return total }
}
`

/** Fixed target and settings: the canary must not depend on where it runs. */
const CANARY_ENV = { GOOS: 'linux', GOARCH: 'amd64', GOAMD64: 'v1', GOEXPERIMENT: '' }

/** Each command of the probe gets this long. Resolves with its whole stdout. */
const PROBE_COMMAND_TIMEOUT_MS = 60_000

async function run (cmd: string, args: string[], env: NodeJS.ProcessEnv, signal: AbortSignal | undefined, cwd?: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    execFile(cmd, args, { env, cwd, timeout: PROBE_COMMAND_TIMEOUT_MS, signal }, (err, stdout, stderr) => {
      if (err === null) resolve(stdout)
      else reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`))
    })
  })
}

/**
 * Which file a compiler is, as far as a stat tells: device, inode, size and modification time.
 * A compile whose tool has another stamp than the probed compiler's is not known to be that
 * compiler: another GOROOT (a copy whose compiler was rebuilt has the same `-V=full`), or Go
 * reinstalled or rebuilt in place since the probe. Undefined when the file cannot be read.
 */
export function compilerStamp (path: string): string | undefined {
  try {
    const st = statSync(path, { bigint: true })
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`
  } catch {
    return undefined
  }
}

/** A probed toolchain: what is advertised, and which compiler binary it was probed from (its path and stamp). */
export interface ProbedCompiler { info: ToolchainInfo, compile: string, stamp: string }

/** Probes `toolchain`: what a node advertises (`probeCompiler` also says which binary that is). */
export async function probeToolchain (toolchain: GoToolchain, signal?: AbortSignal): Promise<ToolchainInfo> {
  return (await probeCompiler(toolchain, signal)).info
}

/**
 * Probes `toolchain`'s compiler. Cancelled through `signal`, it stops its commands and still
 * removes its temp dir before it rejects. The stamp is taken before the compiler is run: a
 * compiler replaced during the probe no longer matches it.
 */
export async function probeCompiler (toolchain: GoToolchain, signal?: AbortSignal): Promise<ProbedCompiler> {
  const env: NodeJS.ProcessEnv = { ...process.env }
  delete env.GOCACHEPROG
  // The compiler is run itself, not through `go tool`: a cancelled probe then stops at once,
  // with no grandchild left holding its output open.
  const [experiment = '', toolDir = ''] = (await run(toolchain.go, ['env', 'GOEXPERIMENT', 'GOTOOLDIR'], env, signal)).split('\n').map(s => s.trim())
  if (!isAbsolute(toolDir)) throw new Error(`${toolchain.go} env GOTOOLDIR: ${JSON.stringify(toolDir)} is not an absolute path`)
  const compile = join(toolDir, process.platform === 'win32' ? 'compile.exe' : 'compile')
  const stamp = compilerStamp(compile)
  if (stamp === undefined) throw new Error(`${compile}: no such compiler`)
  const compiler = (await run(compile, ['-V=full'], env, signal)).trim()
  signal?.throwIfAborted()
  const dir = await mkdtemp(join(tmpdir(), 'grid-canary-'))
  try {
    await writeFile(join(dir, 'canary.go'), CANARY_SOURCE)
    await run(compile, ['-p', 'canary', '-trimpath', `${dir}=>`, '-lang=go1.21', '-pack', '-o', join(dir, 'canary.a'), join(dir, 'canary.go')],
      { ...env, ...CANARY_ENV }, signal, dir)
    const canary = createHash('sha256').update(await readFile(join(dir, 'canary.a'))).digest('hex')
    return { info: { go: toolchain.version, compiler, canary, experiment }, compile, stamp }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
