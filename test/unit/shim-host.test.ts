// The shim runs on this machine whatever the user's builds are for: a GOARCH, GOAMD64 or
// GOEXPERIMENT of the user's, in the environment or in a `go env -w` file, must not reach its
// build, nor its key.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { it } from 'node:test'
import { run, tempDir } from '../helpers/index.js'

/** Runs fn with these variables in process.env (which the shim's build starts from), then restores it. */
async function withEnv<T> (vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map(k => [k, process.env[k]]))
  Object.assign(process.env, vars)
  try {
    return await fn()
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}

it('a GOARCH, GOAMD64 or GOEXPERIMENT of the user\'s (environment or go env -w file) builds no foreign shim: the host\'s binary, under the host\'s key', async (t) => {
  const { detectGo, ensureShim } = await import('@grid/node')
  const hostArch = (await run('go', ['env', 'GOHOSTARCH'])).stdout.trim()
  const foreign = hostArch === 'arm64' ? 'amd64' : 'arm64'
  const plain = await ensureShim(await tempDir(t, 'shim-host'), await detectGo())
  const plainBytes = await readFile(plain)

  const goenv = join(await tempDir(t, 'goenv'), 'env')
  await writeFile(goenv, `GOARCH=${foreign}\nGOEXPERIMENT=fieldtrack\n`)
  const targets: Array<[string, Record<string, string>, string]> = [
    ['environment', { GOARCH: foreign, GOEXPERIMENT: 'fieldtrack' }, foreign],
    ['go env -w file', { GOENV: goenv }, foreign],
    ['GOAMD64 and GOEXPERIMENT', { GOAMD64: 'v2', GOEXPERIMENT: 'fieldtrack' }, hostArch]
  ]
  for (const [where, vars, goarch] of targets) {
    const binary = await withEnv(vars, async () => {
      const toolchain = await detectGo()
      const target = (await run('go', ['env', 'GOARCH'], { env: process.env })).stdout.trim()
      assert.equal(target, goarch, `the user's builds are for ${goarch} (${where})`)
      assert.equal(toolchain.goarch, hostArch, `the toolchain names the platform go runs on (${where})`)
      return await ensureShim(await tempDir(t, 'shim-foreign'), toolchain)
    })
    assert.equal(basename(dirname(binary)), basename(dirname(plain)), `the key names the host, not the target (${where})`)
    const ran = await run(binary, [])
    assert.equal(ran.code, 2, `the shim runs here (${where}): ${ran.stderr}`)
    assert.match(ran.stderr, /^usage: grid-shim /)
    assert.ok((await readFile(binary)).equals(plainBytes), `the same binary as without the user's target settings (${where})`)
  }
})
