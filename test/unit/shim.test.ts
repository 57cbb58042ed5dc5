// The Go shim's own unit tests (msgpack codec, frame caps, flag classification) run with the
// real go, so CI covers the project's only Go code too.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { it } from 'node:test'
import { ROOT, run } from '../helpers/index.js'

it('go vet and go test pass for the shim', async () => {
  const cwd = join(ROOT, 'packages/node/shim')
  const env: NodeJS.ProcessEnv = { ...process.env, GOFLAGS: '-buildvcs=false', GOWORK: 'off' }
  delete env.GOCACHEPROG
  const vet = await run('go', ['vet', '.'], { cwd, env })
  assert.equal(vet.code, 0, vet.stderr)
  const test = await run('go', ['test', '-count=1', '.'], { cwd, env })
  assert.equal(test.code, 0, test.stdout + test.stderr)
  assert.match(test.stdout, /^ok\s/m)
})
