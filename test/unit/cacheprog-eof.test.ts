// The cache helper of a go command that exits without closing its cache: `go list -export` (and
// -compiled), which gopls runs under grid env, builds and puts and never sends `close`. A real
// node (no mesh) on a real Unix socket, the real shim as GOCACHEPROG, the real go.
import assert from 'node:assert/strict'
import { mkdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { detectGo, ensureShim } from '@grid/node'
import { GridNode } from '@grid/node/server'
import { defer, run, tempDir, waitFor } from '../helpers/index.js'

describe('a go command that never closes its cache', () => {
  it('go list -export: its puts reach the index, and the next go list -export compiles nothing, as under plain go', async (t) => {
    const dir = await tempDir(t)
    const mod = join(dir, 'mod')
    await mkdir(join(mod, 'p'), { recursive: true })
    await writeFile(join(mod, 'go.mod'), 'module example.com/eof\n\ngo 1.24\n')
    await writeFile(join(mod, 'p', 'p.go'), 'package p\n\nfunc Double(x int) int { return 2 * x }\n')
    const cacheDir = join(dir, 'cache')
    const control = join(dir, 'g.sock')
    const shim = await ensureShim(cacheDir, await detectGo())
    const node = new GridNode({ cacheDir, control, mode: 'daemon' })
    await node.start()
    defer(t, async () => { await node.stop() })
    const env: NodeJS.ProcessEnv = {
      ...process.env, GOCACHEPROG: `${shim} cacheprog`, GRID_SOCKET: control, GOCACHE: join(dir, 'gocache'), GOFLAGS: '-trimpath', GOWORK: 'off'
    }
    for (const name of ['GRID_BUILD', 'GRID_PARENT', 'GRID_FALLBACK_LOG', 'GRID_WITHOUT_NODE']) delete env[name]
    // the source older than any build that reads it, by more than FILE_CLOCK_SLACK_MS (50 ms): else
    // its output is not stored, as a file edited during the build (builds/sources.ts)
    const written = (await stat(join(mod, 'p', 'p.go'))).ctimeMs
    await waitFor(() => Date.now() > written + 200, 5_000, () => 'the source to be older than the build')
    const list = async (): Promise<string> => {
      const r = await run('go', ['list', '-x', '-export', '-f', '{{.Export}}', './p'], { cwd: mod, env })
      assert.equal(r.code, 0, r.stderr)
      // the helper's connection is the build under grid env: it ends once the helper has told the node all
      await waitFor(() => node.builds.count === 0 && node.builds.last !== undefined, 30_000, () => 'the go command\'s build to end')
      return r.stderr
    }
    const first = await list()
    assert.match(first, /\/compile -o /, 'the first go list compiles the package')
    const puts = node.builds.last?.cache.puts ?? 0
    assert.ok(puts >= 1, `its outputs are stored (${puts} puts): before, the last puts' entries never reached the node`)
    const second = await list()
    assert.doesNotMatch(second, /\/compile -o /, 'the second go list compiles nothing, as under plain go')
    assert.ok((node.builds.last?.cache.hits ?? 0) >= 1)
  })
})
