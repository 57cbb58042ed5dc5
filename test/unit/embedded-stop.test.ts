// An embedded node stops once its builds are done (stopWhenIdle): until then it takes new builds
// and connections, and from the step that sees none it takes neither. A real node (no mesh) on a
// real Unix socket. test/e2e/embedded.test.ts has the same with real `grid build`s racing it.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ControlClient } from '@grid/node'
import { GridNode } from '@grid/node/server'
import { defer, tempDir } from '../helpers/index.js'

describe('an embedded node that stops when its builds are done', () => {
  it('serves builds that come while one runs, and refuses any from the step in which the last one ends', async (t) => {
    const dir = await tempDir(t)
    const control = join(dir, 'g.sock')
    const node = new GridNode({ cacheDir: join(dir, 'cache'), control, mode: 'embedded' })
    await node.start()
    defer(t, async () => { await node.stop() })
    const first = await ControlClient.connect(control)
    defer(t, () => { first.close() })
    const { build } = await first.request({ type: 'build-begin', command: ['go', 'build'], cwd: dir })

    let stopped = false
    const stopping = node.stopWhenIdle().then(() => { stopped = true })
    // a build still runs: a second one joins it, over a new connection
    const second = await ControlClient.connect(control)
    defer(t, () => { second.close() })
    const joined = await second.request({ type: 'build-begin', command: ['go', 'vet'], cwd: dir })
    await second.request({ type: 'build-end', build: joined.build })
    assert.equal(stopped, false)

    node.builds.end(build)
    // the same step: no turn of the event loop in which a build could still begin
    assert.throws(() => node.builds.begin(['go', 'build'], dir), { code: 'GRID_ERR_NODE_CLOSED' })
    await stopping
    await assert.rejects(ControlClient.connect(control), { code: 'GRID_ERR_NODE_UNREACHABLE' })
  })
})
