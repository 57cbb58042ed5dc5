// The package graph grid build lists for the node's plan: the imports cmd/go compiles with,
// including those cgo adds, which `go list`'s Imports leaves out.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { cgoImports, listFlags, listPackages, parseListLine } from '@grid/cli/graph'

describe('the build graph', () => {
  it('adds the imports cmd/go gives a cgo package, except where cmd/go does not', () => {
    assert.deepEqual(cgoImports('example.com/m/sqlite'), ['runtime/cgo', 'syscall'])
    assert.deepEqual(cgoImports('net'), ['runtime/cgo', 'syscall'])
    assert.deepEqual(cgoImports('runtime/cgo'), [])
    assert.deepEqual(cgoImports('runtime/race'), ['runtime/cgo'])
  })

  it('parses a line of go list into the package, its files and its imports', () => {
    const cgo = parseListLine('net\t/go/src/net\ta.go b.go c.go\terrors syscall unsafe\tcgo')
    assert.deepEqual(cgo, { p: 'net', files: ['/go/src/net/a.go', '/go/src/net/b.go', '/go/src/net/c.go'], imports: ['errors', 'syscall', 'unsafe', 'runtime/cgo'] })
    const plain = parseListLine('errors\t/go/src/errors\terrors.go \tinternal/reflectlite\t')
    assert.deepEqual(plain, { p: 'errors', files: ['/go/src/errors/errors.go'], imports: ['internal/reflectlite'] })
    assert.deepEqual(parseListLine('unsafe\t/go/src/unsafe\t \t\t').imports, [])
  })

  it('keeps go list from writing the files the build writes', () => {
    assert.deepEqual(listFlags(['-o', 'out/', '-debug-trace=t.json', '-json', '-race', './...']), ['-race', './...'])
  })

  it('lists net depending on runtime/cgo with cgo on, and not with cgo off', async () => {
    const signal = new AbortController().signal
    const graph = async (cgo: string): Promise<string[] | undefined> =>
      (await listPackages('go', ['net'], { ...process.env, CGO_ENABLED: cgo }, signal))?.find(p => p.p === 'net')?.i
    const on = await graph('1')
    assert.ok(on?.includes('runtime/cgo'), `net's imports with cgo: ${on?.join(' ')}`)
    const off = await graph('0')
    assert.ok(off !== undefined && !off.includes('runtime/cgo'), `net's imports without cgo: ${off?.join(' ')}`)
  })
})
