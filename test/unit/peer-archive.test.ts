// What a requester takes from a peer as a compile's output: the archive the compiler writes for
// the task, and only that. A cgo section the task's sources do not carry is refused: cmd/link
// acts on it (cgo_ldflag reaches the host linker's command line), so a peer could otherwise run
// commands on the requester at link time. Real archives from the real compiler.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'
import { peerArchiveProblem, withCgoSection } from '@grid/node/server'
import { run, suiteContext, tempDir } from '../helpers/index.js'
import { writeRecorder, requester, type Requester } from '../helpers/worker.js'

describe('a peer\'s archive', () => {
  const suite = suiteContext()
  let good: Requester
  let root: string

  before(async () => {
    root = await tempDir(suite, 'archive')
    const recorder = await writeRecorder(root)
    good = await requester(root, 'arch', 'src/share', recorder)
  })

  it('is taken when it is what the task compiles to', () => {
    assert.ok(good.buildId !== undefined && good.buildId !== '', 'cmd/go gives every compile a build ID')
    assert.deepEqual(good.pragmas, [])
    assert.equal(peerArchiveProblem(good.local, good.buildId, good.pragmas ?? []), undefined)
  })

  it('is refused with a cgo section its task\'s sources do not carry', () => {
    const evil = withCgoSection(good.local, [['cgo_ldflag', '-wrapper'], ['cgo_ldflag', '/bin/sh,-c,touch /tmp/x']])
    assert.match(peerArchiveProblem(evil, good.buildId, []) ?? '', /its cgo section has a directive the task's sources do not: \["cgo_ldflag","-wrapper"\]/)
    // a line the sources do carry does not make another one pass
    assert.match(peerArchiveProblem(evil, good.buildId, ['//go:cgo_ldflag "-wrapper"']) ?? '', /\/bin\/sh,-c/)
  })

  it('is taken with the cgo section the sources carry, as the compiler writes it', async () => {
    // -std lets any file carry cgo directives, as runtime's cgo.go does (cgo_export_static main)
    const dir = await tempDir(suite, 'cgo')
    const source = ['package p', '', '//go:cgo_export_static main', '//go:cgo_ldflag "-lm"', '', 'func F() int { return 1 }', ''].join('\n')
    await writeFile(join(dir, 'p.go'), source)
    const built = await run('go', ['tool', 'compile', '-p', 'example.com/p', '-std', '-pack', '-buildid=a/a', '-o', join(dir, 'p.a'), join(dir, 'p.go')])
    assert.equal(built.code, 0, built.stderr)
    const archive = await readFile(join(dir, 'p.a'))
    const pragmas = source.split('\n').filter(l => l.startsWith('//go:cgo_'))
    assert.equal(peerArchiveProblem(archive, 'a/a', pragmas), undefined)
    assert.match(peerArchiveProblem(archive, 'a/a', ['//go:cgo_export_static main']) ?? '', /\["cgo_ldflag","-lm"\]/)
    assert.match(peerArchiveProblem(archive, 'a/a', ['//go:cgo_export_static_x main', '//go:cgo_ldflag "-lm"']) ?? '', /cgo_export_static/, 'a verb is matched whole')
  })

  it('is taken with the export directives of a Go function, which the compiler writes with its ABI', async () => {
    // as runtime/cgo's _cgo_panic and every cgo //export (a linknamed Go function): cmd/compile
    // writes `local remote ABI`
    const dir = await tempDir(suite, 'cgoexport')
    const source = ['package p', '', 'import _ "unsafe"', '', '//go:cgo_export_static F', '//go:cgo_export_dynamic F G', '//go:linkname F F', 'func F() int { return 1 }', ''].join('\n')
    await writeFile(join(dir, 'p.go'), source)
    const built = await run('go', ['tool', 'compile', '-p', 'example.com/p', '-std', '-pack', '-buildid=a/a', '-o', join(dir, 'p.a'), join(dir, 'p.go')])
    assert.equal(built.code, 0, built.stderr)
    const archive = await readFile(join(dir, 'p.a'))
    assert.ok(archive.includes('["cgo_export_static","F","F","ABIInternal"]'), 'the compiler added the ABI')
    const pragmas = source.split('\n').filter(l => l.startsWith('//go:cgo_'))
    assert.equal(peerArchiveProblem(archive, 'a/a', pragmas), undefined)
    // the ABI is the compiler's to add, the names are the source's
    const renamed = withCgoSection(good.local, [['cgo_export_static', 'F', 'H', 'ABIInternal']])
    assert.match(peerArchiveProblem(renamed, good.buildId, ['//go:cgo_export_static F']) ?? '', /\["cgo_export_static","F","H","ABIInternal"\]/)
    const flag = withCgoSection(good.local, [['cgo_ldflag', '-lm', 'ABI0']])
    assert.match(peerArchiveProblem(flag, good.buildId, ['//go:cgo_ldflag "-lm"']) ?? '', /cgo_ldflag/, 'only an export directive gets an ABI')
  })

  it('is refused when it is not this task\'s: another build ID, another member, not an archive', () => {
    assert.match(peerArchiveProblem(good.local, 'other/other', []) ?? '', /not compiled with the task's build ID/)
    const extra = Buffer.concat([good.local, Buffer.from(`${'evil.o'.padEnd(16)}${'0'.padEnd(12)}${'0'.padEnd(6)}${'0'.padEnd(6)}${'644'.padEnd(8)}${'2'.padEnd(10)}\x60\nxx`, 'latin1')])
    assert.match(peerArchiveProblem(extra, good.buildId, []) ?? '', /members __\.PKGDEF, _go_\.o, evil\.o/)
    assert.equal(peerArchiveProblem(Buffer.from('not an archive'), good.buildId, []), 'not an archive')
  })
})
