// Adversarial tasks over the compile stream: a worker refuses each with a clear error naming
// the problem, before it compiles anything, and writes nothing outside its own directory. The
// worker, its pool and the Go toolchain are real; the requester is this test speaking the
// protocol (test/helpers/worker.ts).
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'
import type { Stream } from '@libp2p/interface'
import { MAX_TASK_FILE_BYTES, type CompileTask } from '@grid/protocol'
import { suiteContext, tempDir } from '../helpers/index.js'
import { writeRecorder, openTask, requester, workerFor, type Requester, type Toolchain } from '../helpers/worker.js'

/** Every file below `dir`, relative to it. */
async function tree (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter(e => !e.isDirectory()).map(e => join(e.parentPath, e.name).slice(dir.length + 1)).sort()
}

describe('worker: adversarial tasks', () => {
  let root: string
  let good: Requester & { toolchain: Toolchain }
  let handler: (stream: Stream, connection: unknown) => void
  let compiles: () => number
  let workerDir: string
  let outside: string

  const suite = suiteContext()

  before(async () => {
    root = await tempDir(suite, 'refuse')
    const recorder = await writeRecorder(root)
    good = await requester(root, 'mallory', 'src/share', recorder)
    workerDir = join(root, 'worker')
    outside = join(root, 'outside')
    const w = workerFor(workerDir, good.toolchain, h => { handler = h })
    compiles = w.compiles
    await w.worker.start()
    suite.after(async () => { await w.worker.stop() })
  })

  /** Offers `task`; if the worker asks for inputs, sends `blobs` (default: the good ones). */
  async function attempt (task: unknown, blobs?: Map<string, Buffer>): Promise<{ type: string, message?: string }> {
    const t = await openTask(handler, good, task)
    if (t.need.type !== 'need') return t.need
    return await t.finish(blobs)
  }

  const file = (path: string, data: string): { entry: CompileTask['files'][number], blob: [string, Buffer] } => {
    const bytes = Buffer.from(data)
    const sha256 = sha256Of(bytes)
    return { entry: { path, sha256, size: bytes.length }, blob: [sha256, bytes] }
  }

  it('refuses each, naming the problem, compiles nothing and writes nothing outside its directory', async () => {
    const before = await tree(root)
    const t = good.task
    const importcfgPath = t.inputFlags['-importcfg'] as string
    const below = file(`${t.sources[0] as string}/x.go`, 'package share\n')
    const overlapping = file(t.sources[0] as string, 'package share\n' + '//line '.repeat(60_000) + ':1\n')
    const evilCfg = file(importcfgPath, `packagefile example.com/share/dep=${join(outside, 'secret.a')}\n`)
    const cases: Array<[string, unknown, RegExp, Map<string, Buffer>?]> = [
      ['a path with ..', { ...t, files: [...t.files, { path: `${t.sources[0]}/../../../../etc/passwd`, sha256: 'ab'.repeat(32), size: 1 }] }, /not a clean absolute path/],
      ['a relative path', { ...t, files: [...t.files, { path: 'share.go', sha256: 'ab'.repeat(32), size: 1 }] }, /not a clean absolute path/],
      ['an unknown flag', { ...t, flags: [...t.flags, `-cpuprofile=${join(outside, 'prof')}`] }, /flag "-cpuprofile=.*" is not allowed/],
      ['an output flag', { ...t, flags: [...t.flags, `-o=${join(outside, 'x.a')}`] }, /flag "-o=.*" is not allowed/],
      ['an oversized input', { ...t, files: t.files.map((f, i) => (i === 0 ? { ...f, size: MAX_TASK_FILE_BYTES + 1 } : f)) }, /size of .* \(max \d+ bytes\)/],
      ['a compiler with a terminal escape sequence, which the refusal would print', { ...t, compiler: `${t.compiler}\n\x1b[2J` }, /^task from mallory refused: compiler$/],
      ['an import path with a line break, which logs would print', { ...t, importPath: 'x\nERROR forged' }, /^task from mallory refused: importPath$/],
      ['a toolchain the worker lacks', { ...t, compiler: 'compile version go1.19.13' }, /task needs "compile version go1.19.13", this node has "compile version go/],
      ['an environment variable outside the list', { ...t, env: { ...t.env, LD_PRELOAD: join(outside, 'evil.so') } }, /LD_PRELOAD is not allowed/],
      ['an importcfg naming a file the task does not carry',
        { ...t, files: t.files.map(f => (f.path === importcfgPath ? evilCfg.entry : f)) },
        /names .*secret\.a, which the task does not carry/,
        new Map([...good.blobs, evilCfg.blob])],
      ['an input that does not hash to its name', t, /does not hash to its name/, new Map([...good.blobs].map(([sha, data]) => [sha, Buffer.alloc(data.length, 'x')]))],
      ['an input longer than the task declared', { ...t, files: t.files.map(f => ({ ...f, size: 1 })) }, /sent \d+ bytes for input [0-9a-f]+…, which the task declared as 1 bytes/],
      ['the compiler\'s debug switches, one of which writes a file', { ...t, env: { ...t.env, GOCOMPILEDEBUG: `dumpinlfuncprops=${join(outside, 'evil.pth')}` } }, /GOCOMPILEDEBUG \(the compiler's debug switches\) is not sent to peers/],
      ['an environment value that is not a setting', { ...t, env: { ...t.env, GOEXPERIMENT: 'arenas\nx' } }, /environment value of GOEXPERIMENT has characters a setting does not/],
      ['input paths in more directories than a task needs (each one a mkdir in the sandbox)',
        { ...t, files: [...t.files, ...Array.from({ length: 8 }, (_, i) => ({ path: `/x${i}${'/d'.repeat(1900)}/f`, sha256: 'ab'.repeat(32), size: 0 }))] },
        /input paths lie in over 8192 directories/],
      ['a path that is also the directory of another input', { ...t, files: [...t.files, below.entry] }, /input path ".*share\.go" is also the directory of another input/, new Map([...good.blobs, below.blob])],
      ['a path with a backslash (a separator on Windows, where it could climb out of the sandbox)', { ...t, files: [...t.files, { path: `${t.sources[0] as string}x\\..\\..\\..\\evil.go`, sha256: 'ab'.repeat(32), size: 1 }] }, /not a clean absolute path/],
      ['paths that a case-insensitive file system takes for one (a file the key does not cover would replace a source)',
        { ...t, files: [...t.files, { ...(t.files.find(f => f.path === t.sources[0]) as CompileTask['files'][number]), path: (t.sources[0] as string).replace(/share\.go$/, 'SHARE.go') }] },
        /input paths ".*share\.go" and ".*SHARE\.go" differ only in case or Unicode form/],
      ['a source named twice', { ...t, sources: [...t.sources, ...t.sources] }, /a source is named twice/],
      ['a source whose line directives overlap, naming gigabytes', { ...t, files: t.files.map(f => (f.path === t.sources[0] ? overlapping.entry : f)) }, /line directives name over \d+ files or \d+ bytes/, new Map([...good.blobs, overlapping.blob])],
      ['a path with a line break', { ...t, files: [...t.files, { path: `${t.sources[0] as string}\nimport os.go`, sha256: 'ab'.repeat(32), size: 1 }] }, /not a clean absolute path/],
      ['local imports resolved against a directory (-D)', { ...t, flags: [...t.flags.filter(f => f !== '-nolocalimports'), '-D=/'] }, /flag "-D=\/" is not allowed/],
      ['no -nolocalimports', { ...t, flags: t.flags.filter(f => f !== '-nolocalimports') }, /a task must carry -nolocalimports/],
      ['no importcfg', { ...t, inputFlags: {} }, /a task must carry -importcfg/],
      ['not a task at all', { v: 1, compiler: 42 }, /is of another grid version: the task has no goroot/],
      ['a task with a field this version does not know', { ...t, gcflags: ['-N'] }, /is of another grid version: the task has the field "gcflags"/]
    ]
    for (const [what, task, message, blobs] of cases) {
      const reply = await attempt(task, blobs)
      assert.equal(reply.type, 'fail', `${what}: ${JSON.stringify(reply).slice(0, 200)}`)
      assert.match(reply.message ?? '', message, what)
    }
    assert.equal(compiles(), 0, 'the compiler never ran')
    const after = await tree(root)
    const added = after.filter(f => !before.includes(f))
    assert.deepEqual(added.filter(f => !f.startsWith('worker/blobs/')), [], 'only verified inputs were stored, in the blob store')
    assert.deepEqual(await tree(join(workerDir, 'tasks')).catch(() => []), [], 'no sandbox keeps a file')
    // an absolute requester path is re-rooted under the sandbox, never written where it points
    const reply = await attempt({ ...t })
    assert.equal(reply.type, 'result')
    // inputs held since are checked against what the next task declares before its key reads them
    const lying = await attempt({ ...t, files: t.files.map(f => (f.path === t.sources[0] ? { ...f, size: 0 } : f)) })
    assert.equal(lying.type, 'fail', JSON.stringify(lying).slice(0, 200))
    assert.match(lying.message ?? '', /input [0-9a-f]+… is \d+ bytes, which the task declared as 0 bytes/)
    assert.equal(compiles(), 1, 'only the good task compiled')
    assert.deepEqual((await tree(root)).filter(f => !after.includes(f) && !f.startsWith('worker/blobs/')), [], 'a good task leaves nothing either')
  })

  it('a task its file system cannot lay out fails without naming the worker\'s own paths', async () => {
    // a clean path of 4,090 characters: within the task's limits, past PATH_MAX once under the sandbox
    const long = file(`/${'a'.repeat(254)}`.repeat(16) + '/x.go', 'package share\n')
    const reply = await attempt({ ...good.task, files: [...good.task.files, long.entry] }, new Map([...good.blobs, long.blob])) as { type: string, code?: string, message?: string }
    assert.equal(reply.type, 'fail', JSON.stringify(reply).slice(0, 300))
    assert.equal(reply.code, 'GRID_ERR_INTERNAL')
    assert.ok(!(reply.message ?? '').includes(workerDir), `the reply names the worker's directory: ${reply.message ?? ''}`)
  })

  it('refuses every task once its compiler changed on disk since it was probed, and has it probed again', async () => {
    // A compiler rebuilt or reinstalled in place may write other bytes under the -V=full and
    // canary the node advertised from the file it probed.
    let changed = 0
    let stale: (stream: Stream, connection: unknown) => void = () => {}
    const w = workerFor(join(root, 'worker-stale'), { ...good.toolchain, stamp: 'a compiler that was replaced' }, h => { stale = h }, { changed: () => { changed++ } })
    await w.worker.start()
    try {
      const t = await openTask(stale, good, good.task)
      assert.equal(t.need.type, 'fail')
      assert.equal(t.need.code, 'GRID_ERR_TASK_REFUSED')
      assert.match(t.need.message, /compiler .* changed since it was identified/)
      assert.equal(changed, 1)
      assert.equal(w.compiles(), 0)
    } finally {
      await w.worker.stop()
    }
  })

})

function sha256Of (bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

describe('worker: a full disk', () => {
  it('a worker whose disk is full refuses a task before its inputs move, saying why, and says it takes no work', async (t) => {
    const root = await tempDir(t, 'full')
    const r = await requester(root, 'alice', 'src/share', await writeRecorder(root))
    let handler!: (stream: Stream, connection: unknown) => void
    // no disk has this much free: the worker sees its disk as full
    const w = workerFor(join(root, 'worker'), r.toolchain, h => { handler = h }, { minFreeBytes: Number.MAX_SAFE_INTEGER })
    await w.worker.start()
    t.after(async () => { await w.worker.stop() })
    const opened = await openTask(handler, r, r.task)
    assert.equal(opened.need.type, 'fail', `asked for inputs instead: ${JSON.stringify(opened.need)}`)
    assert.equal(opened.need.code, 'GRID_ERR_TASK_REFUSED')
    assert.match(opened.need.message, /disk is full/)
    assert.equal(w.compiles(), 0)
    assert.deepEqual(await tree(join(root, 'worker', 'blobs')), [], 'no input was written')
    assert.equal(w.worker.hasRoom(), false, 'its advert says it takes no work (mesh.ts accepting)')
  })
})
