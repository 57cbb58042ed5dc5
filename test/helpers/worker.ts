/**
 * A worker under test and the requester's side of its protocol, with the real Go toolchain: a
 * small two-package module built by cmd/go with a recording -toolexec, its compile of
 * example.com/share turned into a task as a requester would, and a worker with a real pool.
 */
import assert from 'node:assert/strict'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { lpStream, streamPair } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { Packr } from 'msgpackr'
import type { CompileTask } from '@grid/protocol'
import { DEFAULT_TASK_MEMORY } from '@grid/node'
import { LocalPool, Worker, buildTask, compilerStamp, parseCompileArgs } from '@grid/node/server'
import { run } from './index.js'

export const MODULE: Record<string, string> = {
  'go.mod': 'module example.com/share\n\ngo 1.24\n',
  'dep/dep.go': 'package dep\n\n// Pair is generic: its body travels in the export data.\ntype Pair[T any] struct{ A, B T }\n\nfunc Swap[T any](p Pair[T]) Pair[T] { return Pair[T]{p.B, p.A} }\n',
  'share.go': 'package share\n\nimport "example.com/share/dep"\n\nfunc Flip(a, b int) (int, int) {\n\tp := dep.Swap(dep.Pair[int]{A: a, B: b})\n\treturn p.A, p.B\n}\n'
}

/** A -toolexec that writes down cmd/go's compile of example.com/share (argv, cwd, env), then runs the tool. */
const RECORDER = `#!/bin/sh
case "$1" in
  */compile) if [ "$TOOLEXEC_IMPORTPATH" = "example.com/share" ] && [ "$2" != "-V=full" ]; then
    pwd > "$REC.cwd"; printf '%s\\0' "$@" > "$REC.args"; env -0 > "$REC.env"; fi ;;
esac
exec "$@"
`

/** Writes the recording toolexec script (RECORDER) into `root`; returns its path, for `requester`. */
export async function writeRecorder (root: string): Promise<string> {
  const recorder = join(root, 'rec.sh')
  await writeFile(recorder, RECORDER)
  await chmod(recorder, 0o755)
  return recorder
}

export interface Toolchain { compiler: string, goroot: string, tool: string, stamp: string }

export interface Requester {
  name: string
  task: CompileTask
  blobs: Map<string, Buffer>
  /** what cmd/go's own compile invocation writes on the requester */
  local: Buffer
  /** the task's -buildid and its sources' //go:cgo_ lines, as the requester checks a result by (peerArchiveProblem) */
  buildId?: string | undefined
  pragmas?: string[]
}

/**
 * Builds example.com/share from `<root>/<dir>` with `go build -trimpath` (fresh GOCACHE, its own
 * $WORK), keeps cmd/go's compile invocation of it, turns that into a task as the requester
 * would, and runs the invocation again as is for the reference bytes. `goEnv`: more of go's
 * environment (a GOOS and GOARCH to build for, say); `files`: more of the module's files, or
 * other contents for MODULE's.
 */
export async function requester (root: string, name: string, dir: string, recorder: string, goEnv: NodeJS.ProcessEnv = {}, files: Record<string, string> = {}): Promise<Requester & { toolchain: Toolchain }> {
  const src = join(root, dir)
  for (const [file, text] of Object.entries({ ...MODULE, ...files })) {
    await mkdir(join(src, file, '..'), { recursive: true })
    await writeFile(join(src, file), text)
  }
  const rec = join(root, `rec-${name}`)
  const env: NodeJS.ProcessEnv = {
    ...process.env, REC: rec, GOCACHE: join(root, `gocache-${name}`), GOTMPDIR: join(root, `tmp-${name}`), GOFLAGS: '', GOWORK: 'off', GOPROXY: 'off', ...goEnv
  }
  delete env.GOCACHEPROG
  await mkdir(env.GOTMPDIR as string, { recursive: true })
  const built = await run('go', ['build', '-trimpath', '-work', '-toolexec', recorder, '.'], { cwd: src, env })
  assert.equal(built.code, 0, built.stderr)
  const argv = (await readFile(`${rec}.args`, 'utf8')).split('\0').slice(0, -1)
  const cwd = (await readFile(`${rec}.cwd`, 'utf8')).trim()
  const toolEnv = Object.fromEntries((await readFile(`${rec}.env`, 'utf8')).split('\0').filter(kv => kv.includes('=')).map(kv => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))
  const tool = argv[0] as string
  const compiler = (await run(tool, ['-V=full'])).stdout.trim()
  const goroot = (await run('go', ['env', 'GOROOT'], { env })).stdout.trim()
  const parsed = parseCompileArgs(argv.slice(1), cwd)
  if ('unsupported' in parsed) throw new Error(`cmd/go's compile is not a task: ${parsed.unsupported}`)
  const prepared = await buildTask(parsed, toolEnv, compiler, goroot)
  if ('unsupported' in prepared) throw new Error(`cmd/go's compile is not a task: ${prepared.unsupported}`)
  const again = await run(tool, argv.slice(1), { cwd, env: toolEnv })
  assert.equal(again.code, 0, again.stderr)
  return { name, task: prepared.task, blobs: prepared.blobs, local: await readFile(parsed.out), buildId: prepared.buildId, pragmas: prepared.pragmas, toolchain: { compiler, goroot, tool, stamp: compilerStamp(tool) ?? '' } }
}

/** A worker with a real pool of one slot, counting the compiles the pool completes. `minFreeBytes`: the room it wants on its disk; `changed`: called when its compiler changed on disk. */
export function workerFor (dir: string, toolchain: Toolchain, handle?: (h: (stream: Stream, connection: unknown) => void) => void, options: { minFreeBytes?: number, changed?: () => void, readBudgetBytes?: number, readShareBytes?: number, unpackBudgetBytes?: number, unpackShareBytes?: number, sendBaseMs?: number } = {}): { worker: Worker, pool: LocalPool, compiles: () => number } {
  const pool = new LocalPool({ slots: 1 })
  let compiles = 0
  const runInPool = pool.run.bind(pool)
  pool.run = async (...args) => {
    const outcome = await runInPool(...args)
    compiles++
    return outcome
  }
  // Only the stream test starts the worker; it hands the protocol handler to the test.
  const libp2p = { handle: async (_protocol: string, h: (stream: Stream, connection: unknown) => void) => { handle?.(h) }, unhandle: async () => {} }
  const worker = new Worker({ libp2p: libp2p as never, dir, pool, memoryBytes: DEFAULT_TASK_MEMORY, toolchain: () => toolchain, accepting: () => true, ...options })
  return { worker, pool, compiles: () => compiles }
}


const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })

/** One offer's answer, and the rest of that task (inputs, done, the reply). */
export interface OpenedTask { need: any, finish: (blobs?: Map<string, Buffer>) => Promise<any> }

/**
 * A requester's side of /grid/compile/1.2.0 against `handler`, one step at a time. `offer`
 * sends the next task on the same stream once the last one is answered.
 */
export async function openTask (handler: (stream: Stream, connection: unknown) => void, r: Pick<Requester, 'name' | 'blobs'>, task: unknown): Promise<OpenedTask & { stream: Stream, offer: (task: unknown, who: Pick<Requester, 'blobs'>) => Promise<OpenedTask> }> {
  const [out, inbound] = await streamPair()
  handler(inbound, { remotePeer: { toString: () => r.name } })
  const lp = lpStream(out)
  const offer = async (t: unknown, who: Pick<Requester, 'blobs'>): Promise<OpenedTask> => {
    await lp.write(packr.pack({ type: 'offer', task: t }))
    const need = packr.unpack((await lp.read()).subarray())
    return { need, finish: async (blobs = who.blobs) => await answerNeed(lp, need, blobs) }
  }
  return { stream: out, offer, ...await offer(task, r) }
}

/**
 * An eager offer on a fresh stream: the task, the inputs `sent` (by hash, from `r.blobs`, or
 * given) and `done` in one write. `need` is the worker's first answer (a result, a need or a
 * fail); `finish` answers a need as `openTask`'s does. `offer`: more fields of the offer.
 */
export async function openEager (handler: (stream: Stream, connection: unknown) => void, r: Pick<Requester, 'name' | 'blobs'>, task: unknown, sent: Array<string | { sha256: string, data: Buffer, packed?: string }>, offer: Record<string, unknown> = {}): Promise<OpenedTask & { stream: Stream }> {
  const [out, inbound] = await streamPair()
  handler(inbound, { remotePeer: { toString: () => r.name } })
  const lp = lpStream(out)
  const items = sent.map(i => typeof i === 'string' ? { sha256: i, data: r.blobs.get(i) } : i)
  await lp.writeV([packr.pack({ ...offer, type: 'offer', task, eager: true }), ...(items.length > 0 ? [packr.pack({ type: 'blobs', items })] : []), packr.pack({ type: 'done' })])
  const first = packr.unpack((await lp.read()).subarray())
  return { stream: out, need: first, finish: async (blobs = r.blobs) => await answerNeed(lp, first, blobs) }
}

/** Sends the inputs a `need` asked for, then `done`, and returns the worker's reply. */
async function answerNeed (lp: ReturnType<typeof lpStream>, need: any, blobs: Map<string, Buffer>): Promise<any> {
  await lp.write(packr.pack({ type: 'blobs', items: (need.hashes as string[]).map(sha256 => ({ sha256, data: blobs.get(sha256) })) }))
  await lp.write(packr.pack({ type: 'done' }))
  return packr.unpack((await lp.read()).subarray())
}
