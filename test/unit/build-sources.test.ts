// What a compile reads, for the check that its sources did not change during the build
// (packages/node/src/builds/sources.ts): read off cmd/go's command line.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { buildIdAction, compileFiles } from '@grid/node'

const WORK = '/tmp/go-build123'
const PKG = '/home/u/src/m/p'

describe('the files a compile reads', () => {
  it('a plain package: its Go files, by the action ID in -buildid; -p takes a word ending in .go as its value', () => {
    const c = compileFiles(['-o', `${WORK}/b001/_pkg_.a`, '-trimpath', `${PKG}=>example.com/m/p;${WORK}/b001=>`, '-p', 'example.com/x.go',
      '-lang=go1.22', '-buildid', 'abcdefghijklmnopqrst/abcdefghijklmnopqrst', '-goversion', 'go1.26.0', '-c=2', '-nolocalimports',
      '-importcfg', `${WORK}/b001/importcfg`, '-pack', './p/a.go', `${PKG}/b.go`], '/home/u/src/m')
    assert.deepEqual(c, { action: 'abcdefghijklmnopqrst', goFiles: [`${PKG}/a.go`, `${PKG}/b.go`], embedcfg: undefined, dirs: [] })
  })

  it('cgo, cover and asm: Go files in $WORK are left out, and the package directory is listed whole', () => {
    const cgo = compileFiles(['-o', `${WORK}/b007/_pkg_.a`, '-trimpath', `${PKG}=>example.com/m/p;${WORK}/b007=>`, '-buildid=A/A',
      `${WORK}/b007/_x001.cgo1.go`, `${WORK}/b007/_cgo_gotypes.go`], '/')
    assert.deepEqual(cgo, { action: 'A', goFiles: [], embedcfg: undefined, dirs: [PKG] })
    const asm = compileFiles(['-o', `${WORK}/b002/_pkg_.a`, '-buildid', 'A/A', '-symabis', `${WORK}/b002/symabis`, '-asmhdr', `${WORK}/b002/go_asm.h`,
      '-embedcfg', `${WORK}/b002/embedcfg`, `${PKG}/a.go`], '/')
    assert.deepEqual(asm, { action: 'A', goFiles: [`${PKG}/a.go`], embedcfg: `${WORK}/b002/embedcfg`, dirs: [PKG] })
  })

  it('a package of a module version in the module cache: written once, as cmd/go extracted it (maybe during this build), not checked', () => {
    const dir = '/home/u/go/pkg/mod/example.com/greet@v1.0.0/internal/words'
    assert.deepEqual(compileFiles(['-o', `${WORK}/b003/_pkg_.a`, '-trimpath', `${dir}=>example.com/greet@v1.0.0/internal/words;${WORK}/b003=>`,
      '-buildid', 'A/A', '-asmhdr', `${WORK}/b003/go_asm.h`, `${dir}/words.go`], '/'), { action: 'A', goFiles: [], embedcfg: undefined, dirs: [] })
  })

  it('a compile without -buildid or -o is not cmd/go\'s: nothing to check', () => {
    assert.equal(compileFiles(['-o', '/x/_pkg_.a', 'a.go'], '/'), undefined)
    assert.equal(compileFiles(['-buildid', 'A/A', 'a.go'], '/'), undefined)
  })

  it('an ActionID as cmd/go writes it into -buildid (cmd/internal/buildid.HashToString)', () => {
    const id = new Uint8Array(32).map((_, i) => i * 17)
    // 00 11 22 | 33 44 55 | 66 77 88 | 99 aa bb | cc dd ee: four characters of 6 bits per 3 bytes
    assert.equal(buildIdAction(id), 'ABEiM0RVZneImaq7zN3u')
  })
})
