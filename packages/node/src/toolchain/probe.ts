/**
 * What a node advertises about its toolchain (shared/DESIGN.md §4): the release, the
 * compiler's `-V=full` line, GOEXPERIMENT, and a canary: the sha256 of compiling a fixed tiny
 * package with fixed arguments for a fixed target. Release toolchains built anywhere give the
 * same canary; a patched compiler behind an unchanged version string does not.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ToolchainInfo } from '@grid/protocol'
import type { GoToolchain } from './index.js'

const CANARY_SOURCE = `package canary

type Pair[T any] struct{ A, B T }

func Swap[T any](p Pair[T]) Pair[T] { return Pair[T]{p.B, p.A} }

func Sum(xs []int) (n int) {
	for _, x := range xs {
		n += x
	}
	return n
}
`

/** Fixed target and settings: the canary must not depend on where it runs. */
const CANARY_ENV = { GOOS: 'linux', GOARCH: 'amd64', GOAMD64: 'v1', GOEXPERIMENT: '' }

async function run (cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    execFile(cmd, args, { env, cwd, signal: AbortSignal.timeout(60_000) }, (err, stdout, stderr) => {
      if (err === null) resolve(stdout.trim())
      else reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`))
    })
  })
}

export async function probeToolchain (toolchain: GoToolchain): Promise<ToolchainInfo> {
  const env: NodeJS.ProcessEnv = { ...process.env }
  delete env.GOCACHEPROG
  const [compiler, experiment] = await Promise.all([
    run(toolchain.go, ['tool', 'compile', '-V=full'], env),
    run(toolchain.go, ['env', 'GOEXPERIMENT'], env)
  ])
  const dir = await mkdtemp(join(tmpdir(), 'grid-canary-'))
  try {
    await writeFile(join(dir, 'canary.go'), CANARY_SOURCE)
    await run(toolchain.go, ['tool', 'compile', '-p', 'canary', '-trimpath', `${dir}=>`, '-lang=go1.21', '-pack', '-o', join(dir, 'canary.a'), join(dir, 'canary.go')],
      { ...env, ...CANARY_ENV }, dir)
    const canary = createHash('sha256').update(await readFile(join(dir, 'canary.a'))).digest('hex')
    return { go: toolchain.version, compiler, canary, experiment }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
