/**
 * Requester side: turns a compile from cmd/go into a CompileTask plus the bytes of every input,
 * keyed by sha256. Dependencies travel as export data only. Embedded files and the embedcfg,
 * the importcfg, symabis and PGO profile travel as inputs; nothing else does.
 *
 * Files are read synchronously: they are small, local and just written by cmd/go (in the page
 * cache), and each asynchronous read is four trips through the thread pool and the event loop,
 * which on a busy requester cost more than the reads (about a tenth of its node's time in the lab).
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { OUTPUT_ENV, TASK_VERSION, validateTask, type CompileTask, type TaskFile } from '@grid/protocol'
import { exportDataOnly } from './archive.js'
import { ARCHIVE_BYTES_PER_SOURCE_BYTE } from './constants.js'
import type { ExportDataCache } from './export-cache.js'
import type { ParsedCompile } from './parse.js'

export interface PreparedTask {
  task: CompileTask
  blobs: Map<string, Buffer>
  out: string
  asmhdr: string | undefined
  inputBytes: number
  /** the `//go:cgo_*` lines of the sources: all a peer's archive may carry (peerArchiveProblem) */
  pragmas: string[]
  /** the `-buildid` the task gives the compiler, which heads the archive's members */
  buildId: string | undefined
}

/** The `//go:cgo_*` directive lines of a source (the compiler takes them from line starts). */
function cgoPragmas (source: Buffer, into: string[]): void {
  if (!source.includes('//go:cgo_')) return
  for (const line of source.toString('utf8').split('\n')) if (line.startsWith('//go:cgo_')) into.push(line.trimEnd())
}

export async function buildTask (parsed: ParsedCompile, env: Record<string, string>, compiler: string, goroot: string, exports?: ExportDataCache): Promise<PreparedTask | { unsupported: string }> {
  const blobs = new Map<string, Buffer>()
  const files = new Map<string, TaskFile>()
  const add = (path: string, bytes: Buffer, sha256 = createHash('sha256').update(bytes).digest('hex')): void => {
    blobs.set(sha256, bytes)
    files.set(path, { path, sha256, size: bytes.length })
  }
  const pragmas: string[] = []
  for (const src of parsed.sources) {
    const bytes = readFileSync(src)
    cgoPragmas(bytes, pragmas)
    add(src, bytes)
  }
  for (const [flag, path] of Object.entries(parsed.inputFlags)) {
    const bytes = readFileSync(path)
    add(path, bytes)
    if (flag === '-importcfg') {
      for (const line of bytes.toString('utf8').split('\n')) {
        const m = /^packagefile [^=]+=(.+)$/.exec(line.trim())
        if (m === null) continue
        const dep = m[1] as string
        if (exports !== undefined) {
          const cached = exports.get(dep)
          if (cached === undefined) return { unsupported: `dependency ${dep} is not a Go archive` }
          add(dep, cached.data, cached.sha256)
          continue
        }
        const data = exportDataOnly(readFileSync(dep))
        if (data === undefined) return { unsupported: `dependency ${dep} is not a Go archive` }
        add(dep, data)
      }
    }
    if (flag === '-embedcfg') {
      const cfg = JSON.parse(bytes.toString('utf8')) as { Files?: Record<string, string> }
      for (const file of Object.values(cfg.Files ?? {})) add(file, readFileSync(file))
    }
  }
  const taskEnv: Record<string, string> = {}
  for (const k of OUTPUT_ENV) if (k !== 'GOROOT' && env[k] !== undefined) taskEnv[k] = env[k] as string
  let inputBytes = 0
  for (const f of files.values()) inputBytes += f.size
  const task: CompileTask = {
    v: TASK_VERSION,
    compiler,
    goroot,
    env: taskEnv,
    flags: parsed.flags,
    trimpath: parsed.trimpath,
    inputFlags: parsed.inputFlags,
    sources: parsed.sources,
    files: [...files.values()],
    asmhdr: parsed.asmhdr !== undefined,
    importPath: parsed.importPath
  }
  // What a worker would refuse stays here, without costing a peer its score.
  try {
    validateTask(task, 'this node')
  } catch (err) {
    return { unsupported: (err as Error).message }
  }
  const buildId = parsed.flags.find(f => f.startsWith('-buildid='))?.slice('-buildid='.length)
  return { task, blobs, out: parsed.out, asmhdr: parsed.asmhdr, inputBytes, pragmas, buildId }
}

/** Directories of every input: each gets a sandbox => requester rule in the relocation recipe. */
export function inputDirs (task: CompileTask): string[] {
  return [...new Set(task.files.map(f => dirname(f.path)))]
}

/** What a task moves to a peer that holds none of its inputs: its inputs, and its archive back (unpacked). */
export interface TaskBytes { inputs: number, archive: number }

/**
 * The bytes a task moves to a peer that holds none of its inputs: the inputs, and an archive
 * guessed from the size of its sources. Our tasks' bytes per ms of expected compile are learnt
 * mostly from small packages, whose archives are small beside the export data they take in; a
 * long pole's archive is not (runtime's inputs are 3 MB, its archive 13 MB).
 */
export function taskBytes (prepared: PreparedTask): TaskBytes {
  const sources = new Set(prepared.task.sources)
  const sourceBytes = prepared.task.files.reduce((n, f) => n + (sources.has(f.path) ? f.size : 0), 0)
  return { inputs: prepared.inputBytes, archive: ARCHIVE_BYTES_PER_SOURCE_BYTE * sourceBytes }
}
