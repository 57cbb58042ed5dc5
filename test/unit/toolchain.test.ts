// The toolchain probe behind a node's adverts: cancelled while its canary compiles, it stops
// and takes its temp dir with it (a node that stops soon after its mesh starts cancels it).
import assert from 'node:assert/strict'
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { detectGo } from '@grid/node'
import { probeToolchain } from '@grid/node/server'
import { defer, patchedGoroot, tempDir, waitFor } from '../helpers/index.js'

describe('toolchain probe', () => {
  it('cancelled while its canary compiles, stops and leaves no temp dir', async (t) => {
    const dir = await tempDir(t)
    const tmp = join(dir, 'tmp')
    await mkdir(tmp)
    // A go that answers the probe's questions, with a compiler whose canary compile never ends.
    const go = join(dir, 'go')
    const toolDir = join(dir, 'tool')
    await mkdir(toolDir)
    await writeFile(go, `#!/bin/sh\nprintf '\\n%s\\n' '${toolDir}'\n`)
    await writeFile(join(toolDir, 'compile'), '#!/bin/sh\ncase "$*" in\n  *canary*) exec sleep 120 ;;\n  *) echo "compile version go1.26.8" ;;\nesac\n')
    await chmod(go, 0o755)
    await chmod(join(toolDir, 'compile'), 0o755)
    const oldTmp = process.env.TMPDIR
    process.env.TMPDIR = tmp
    defer(t, () => { if (oldTmp === undefined) delete process.env.TMPDIR; else process.env.TMPDIR = oldTmp })

    const abort = new AbortController()
    const probing = probeToolchain({ go, version: 'go1.26.8', goroot: dir, goos: 'linux', goarch: 'amd64', gocache: join(dir, 'gocache') }, abort.signal)
    await waitFor(async () => (await readdir(tmp)).length > 0, 30_000, () => 'the probe to make its canary dir')
    abort.abort()
    // Not cancelled, it would wait out the sleep and then fail to read canary.a.
    await assert.rejects(probing, /abort/i)
    assert.deepEqual(await readdir(tmp), [], 'the canary dir is removed')
  })

  it('gives another canary for a compiler that decides otherwise on what a release decides (the same -V=full)', async (t) => {
    // A compiler that inlines no function with a closure stands for one rebuilt from patched
    // sources: the canary of generics and a loop alone did not tell it from the release.
    const stock = await detectGo()
    const goroot = await patchedGoroot(t, ['-d=inlfuncswithclosures=0'])
    const go = join(await tempDir(t), 'go')
    await writeFile(go, `#!/bin/sh\nGOROOT='${goroot}' exec '${join(stock.goroot, 'bin', 'go')}' "$@"\n`)
    await chmod(go, 0o755)
    const [own, patched] = [await probeToolchain(stock), await probeToolchain({ ...stock, go, goroot })]
    assert.equal(patched.compiler, own.compiler, 'the same -V=full')
    assert.notEqual(patched.canary, own.canary)
  })

})
