// A slice of the standard library (net/http and its dependencies) from empty caches.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { it } from 'node:test'
import { FIXTURES, goBuild, grid, sameFiles, summary, world } from '../helpers/index.js'

it('net/http and its deps from an empty cache: byte-identical to go build -trimpath', async (t) => {
  const w = await world(t)
  const cwd = join(FIXTURES, 'stdhttp')
  const ref = join(w.dir, 'ref')
  const out = join(w.dir, 'out')
  const plain = await goBuild(['-o', ref + '/', '.'], cwd)
  assert.equal(plain.code, 0, plain.stderr)
  const r = await grid(w, ['--json', 'build', '-o', out + '/', '.'], { cwd })
  assert.equal(r.code, 0, r.stderr)
  const s = summary(r)
  assert.ok(s.compiles.local > 100, `compiled ${s.compiles.local} std packages through the node`)
  assert.deepEqual(s.compiles.fallbacks, {})
  assert.deepEqual(await sameFiles(out, ref), ['stdhttp'])
})
