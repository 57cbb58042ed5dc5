// Eager offers on the compile stream: the inputs come with the offer, and the worker answers
// with the result at once, or asks only for what it still lacks, or refuses an input that is not
// the task's. The worker, its pool and the Go toolchain are real; the requester is this test
// speaking the protocol (test/helpers/worker.ts).
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { readFile, readdir } from 'node:fs/promises'
import { brotliCompressSync, brotliDecompressSync } from 'node:zlib'
import { before, describe, it } from 'node:test'
import type { Stream } from '@libp2p/interface'
import { suiteContext, tempDir } from '../helpers/index.js'
import { writeRecorder, openEager, requester, workerFor, type Requester, type Toolchain } from '../helpers/worker.js'

describe('worker: eager offers', () => {
  let r: Requester & { toolchain: Toolchain }
  let handler: (stream: Stream, connection: unknown) => void
  let compiles: () => number

  const suite = suiteContext()

  before(async () => {
    const root = await tempDir(suite, 'eager')
    const recorder = await writeRecorder(root)
    r = await requester(root, 'alice', 'src/share', recorder)
    const w = workerFor(join(root, 'worker'), r.toolchain, h => { handler = h })
    compiles = w.compiles
    await w.worker.start()
    suite.after(async () => { await w.worker.stop() })
  })

  it('with every input missing there, some of them, or none: asks only for what it lacks, and the archive is cmd/go\'s', async () => {
    const all = [...r.blobs.keys()]
    assert.ok(all.length >= 3, `the task has ${all.length} inputs`)
    // all but the first: the worker lacks just that one and says so
    const partial = await openEager(handler, r, r.task, all.slice(1))
    assert.equal(partial.need.type, 'need', JSON.stringify(partial.need).slice(0, 200))
    assert.deepEqual(partial.need.hashes, [all[0]])
    const first = await partial.finish()
    assert.equal(first.type, 'result', JSON.stringify(first).slice(0, 200))
    assert.equal(first.exitCode, 0)
    assert.ok(Buffer.from(first.archive).equals(r.local), 'the archive is byte-identical to cmd/go\'s')

    // now it holds them all: an eager offer with nothing behind it is answered with the result
    const none = await openEager(handler, r, r.task, [])
    assert.equal(none.need.type, 'result', JSON.stringify(none.need).slice(0, 200))
    assert.ok(Buffer.from(none.need.archive).equals(r.local))
    // and inputs it already holds, sent again, are taken without a question
    const again = await openEager(handler, r, r.task, all)
    assert.equal(again.need.type, 'result')
    assert.equal(compiles(), 3)
  })

  it('packs the archive when the offer asks (a slow link), and only then; a packing it does not know gets the archive as it is', async () => {
    const all = [...r.blobs.keys()]
    const asked = await openEager(handler, r, r.task, all, { pack: 'br' })
    assert.equal(asked.need.type, 'result', JSON.stringify(asked.need).slice(0, 200))
    assert.equal(asked.need.packed, 'br')
    assert.ok(asked.need.archive.length < r.local.length, `packed ${asked.need.archive.length} of ${r.local.length} bytes`)
    assert.ok(brotliDecompressSync(asked.need.archive).equals(r.local), 'it unpacks to cmd/go\'s archive')
    for (const pack of [undefined, 'zstd']) {
      const plain = await openEager(handler, r, r.task, all, pack === undefined ? {} : { pack })
      assert.equal(plain.need.type, 'result')
      assert.equal(plain.need.packed, undefined, String(pack))
      assert.ok(Buffer.from(plain.need.archive).equals(r.local), String(pack))
    }
  })

  it('a compile for wasm, which cmd/go gives -dwarf=false, is a task too, and its archive is cmd/go\'s', async () => {
    // cmd/go passes -dwarf=false to every compile for wasm and plan9, and to the main package
    // of go run and of a test: such compiles used to stay here (unsupported-task)
    const root = await tempDir(suite, 'wasm')
    const w = await requester(root, 'wasm', 'src/share', await writeRecorder(root), { GOOS: 'js', GOARCH: 'wasm' })
    assert.ok(w.task.flags.includes('-dwarf=false'), w.task.flags.join(' '))
    const t = await openEager(handler, w, w.task, [...w.blobs.keys()])
    assert.equal(t.need.type, 'result', JSON.stringify(t.need).slice(0, 200))
    assert.equal(t.need.exitCode, 0)
    assert.ok(Buffer.from(t.need.archive).equals(w.local), 'the archive is byte-identical to cmd/go\'s')
  })

  it('a compile go test -fuzz instruments (-d=libfuzzer) is a task too, and its archive is cmd/go\'s', async () => {
    // cmd/go gives -d=libfuzzer to every package a go test -fuzz builds: the shim ran each
    // of them itself, past the node (fallback unsupported-flag), like a -d that writes files
    const root = await tempDir(suite, 'fuzz')
    const f = await requester(root, 'fuzz', 'src/share', await writeRecorder(root), { GOFLAGS: '-gcflags=-d=libfuzzer' })
    assert.ok(f.task.flags.includes('-d=libfuzzer'), f.task.flags.join(' '))
    const t = await openEager(handler, f, f.task, [...f.blobs.keys()])
    assert.equal(t.need.type, 'result', JSON.stringify(t.need).slice(0, 200))
    assert.equal(t.need.exitCode, 0)
    assert.ok(Buffer.from(t.need.archive).equals(f.local), 'the archive is byte-identical to cmd/go\'s')
    assert.ok(!Buffer.from(t.need.archive).equals(r.local), 'and instrumented')
  })

  it('a package embedding a tree of some hundred directories compiles there, and its archive is cmd/go\'s', async () => {
    // The worker's -trimpath had a rule per input directory: past ~300 long ones it outgrew
    // Linux's 128 KiB cap on one argument, and the compiler could not start (E2BIG) on any peer.
    const root = await tempDir(suite, 'tree')
    const files: Record<string, string> = {
      'share.go': 'package share\n\nimport "embed"\n\n//go:embed tree\nvar Tree embed.FS\n'
    }
    for (let i = 0; i < 400; i++) files[`tree/${'d'.repeat(150)}${i}/f.txt`] = `${i}\n`
    const e = await requester(root, 'tree', 'src/share', await writeRecorder(root), {}, files)
    const t = await openEager(handler, e, e.task, [...e.blobs.keys()])
    assert.equal(t.need.type, 'result', JSON.stringify(t.need).slice(0, 200))
    assert.equal(t.need.exitCode, 0)
    assert.ok(Buffer.from(t.need.archive).equals(e.local), 'the archive is byte-identical to cmd/go\'s')
  })

  it('takes inputs packed (a requester on a slow link whose advert it gave) and compiles cmd/go\'s archive; a packed input that does not unpack to its declared size is refused and not stored', async () => {
    // a worker of its own: this suite's holds every input already, and takes them without unpacking
    const root = await tempDir(suite, 'unpack')
    let fresh: ((stream: Stream, connection: unknown) => void) | undefined
    const w = workerFor(join(root, 'worker'), r.toolchain, h => { fresh = h })
    await w.worker.start()
    suite.after(async () => { await w.worker.stop() })
    const inputsHeld = async (): Promise<string[]> => (await readdir(join(root, 'worker', 'blobs'), { recursive: true })).filter(f => /[0-9a-f]{64}$/.test(f)).map(f => f.slice(-64))
    const serve = fresh as (stream: Stream, connection: unknown) => void
    const packed = (sha256: string, data: Buffer): { sha256: string, data: Buffer, packed: string } => ({ sha256, data: brotliCompressSync(data), packed: 'br' })

    // lies first, while the worker holds nothing: bytes that are not brotli, and bytes that
    // unpack to more than the task declared
    const [big, bigData] = [...r.blobs].sort((a, b) => b[1].length - a[1].length)[0] as [string, Buffer]
    for (const [lie, why] of [
      [{ sha256: big, data: Buffer.from('not brotli at all'), packed: 'br' }, /packed input .* does not unpack \(the task declared it as \d+ bytes\)/],
      [packed(big, Buffer.concat([bigData, Buffer.from('more')])), /packed input .* unpacks to more than \d+ bytes/]
    ] as const) {
      const t = await openEager(serve, r, r.task, [lie])
      assert.equal(t.need.type, 'fail', JSON.stringify(t.need).slice(0, 200))
      assert.equal(t.need.code, 'GRID_ERR_TASK_REFUSED')
      assert.match(t.need.message, why)
    }
    assert.deepEqual(await inputsHeld(), [], 'nothing stored')
    assert.equal(w.compiles(), 0)

    // every input packed: unpacked, checked by hash and stored as it is; the archive is cmd/go's
    const items = [...r.blobs].map(([sha256, data]) => packed(sha256, data))
    assert.ok(items.some(i => i.data.length < (r.blobs.get(i.sha256) as Buffer).length), 'some input packs smaller')
    const t = await openEager(serve, r, r.task, items)
    assert.equal(t.need.type, 'result', JSON.stringify(t.need).slice(0, 200))
    assert.ok(Buffer.from(t.need.archive).equals(r.local), 'the archive is byte-identical to cmd/go\'s')
    assert.deepEqual((await inputsHeld()).sort(), [...r.blobs.keys()].sort())
    assert.equal(w.worker.stats.unpacked, 1, 'one task whose inputs came packed (the lies were refused)')
    for (const [sha256, data] of r.blobs) assert.ok((await readFile(join(root, 'worker', 'blobs', sha256.slice(0, 2), sha256))).equals(data), 'stored unpacked')
  })

  it('refuses an input sent with the offer that is not one of the task\'s, and compiles nothing', async () => {
    const before = compiles()
    const stranger = Buffer.from('package evil\n')
    const t = await openEager(handler, r, r.task, [{ sha256: 'ab'.repeat(32), data: stranger }])
    assert.equal(t.need.type, 'fail')
    assert.match(t.need.message, /sent an input that is not one of the task's inputs/)
    assert.equal(compiles(), before)
  })
})
