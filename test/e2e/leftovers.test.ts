// What a grid build killed before its end leaves in TMPDIR (its shims' notes) is removed by a
// later build, and what a running build's shims write is not. Real grid processes, one of them
// killed with SIGKILL, in a TMPDIR of the test's own.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { describe, it } from 'node:test'
import { SWEEP_STAMP } from '@grid/cli/fallback-log'
import { GRID_BIN, defer, goBuild, grid, sameFiles, summary, waitFor, world } from '../helpers/index.js'

/** Sets a file's times `ms` back. */
async function age (path: string, ms: number): Promise<void> {
  const then = new Date(Date.now() - ms)
  await utimes(path, then, then)
}

describe('grid build\'s notes in TMPDIR', () => {
  it('those of a grid build killed mid-build are removed by a later one; a running build\'s stay', async (t) => {
    const w = await world(t)
    const tmp = join(w.dir, 'tmp')
    await mkdir(tmp)
    const env = { ...w.env, TMPDIR: tmp }
    const mod = join(w.dir, 'mod')
    await mkdir(mod)
    await writeFile(join(mod, 'go.mod'), 'module example.com/tiny\n\ngo 1.24\n')
    await writeFile(join(mod, 'main.go'), 'package main\n\nfunc main() {}\n')

    // A go whose build runs until it is killed, and says where its shims would write.
    const said = join(w.dir, 'said')
    const go = join(w.dir, 'go-long')
    await writeFile(go, `#!/bin/sh\nif [ "$1" = build ]; then printf '%s\\n%s\\n' "$$" "$GRID_FALLBACK_LOG" > '${said}.tmp'; mv '${said}.tmp' '${said}'; exec sleep 600; fi\nexec go "$@"\n`, { mode: 0o755 })
    const killed = spawn(process.execPath, [GRID_BIN, 'build', '.'], { cwd: mod, env: { ...env, GRID_GO: go }, stdio: 'ignore' })
    const killedExit = new Promise<void>(resolve => killed.once('exit', () => resolve()))
    defer(t, async () => { killed.kill('SIGKILL'); await killedExit })
    await waitFor(async () => await readFile(said, 'utf8').then(() => true, () => false), 60_000, () => 'grid to start go')
    const [goPid, log] = (await readFile(said, 'utf8')).trim().split('\n') as [string, string]
    defer(t, () => { try { process.kill(Number(goPid), 'SIGKILL') } catch {} })
    assert.equal(dirname(log), tmp)
    assert.match(basename(log), new RegExp(`^grid-fallbacks-${killed.pid as number}-[0-9a-f]{24}$`))
    // its shims ran a compile themselves, and found the node hung
    await writeFile(log, 'node-stalled\n')
    await writeFile(`${log}.stalled`, '')
    killed.kill('SIGKILL')
    await killedExit
    process.kill(Number(goPid), 'SIGKILL') // the go it started, which a killed grid leaves running

    // An hour on, and a day since a build last looked.
    const hour = 61 * 60_000
    await age(log, hour)
    await age(`${log}.stalled`, hour)
    const stamp = join(w.cacheDir, SWEEP_STAMP)
    await writeFile(stamp, '')
    await age(stamp, 25 * hour)
    // a running build's (this process's), as old
    const running = join(tmp, `grid-fallbacks-${process.pid}-${randomBytes(12).toString('hex')}`)
    await writeFile(running, 'node-stalled\n')
    await age(running, hour)

    const out = join(w.dir, 'out')
    const r = await grid(w, ['--json', 'build', '-o', out + '/', '.'], { cwd: mod, env })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(summary(r).node, 'embedded')
    const ref = join(w.dir, 'ref')
    assert.equal((await goBuild(['-o', ref + '/', '.'], mod)).code, 0)
    await sameFiles(out, ref)
    const left = (await readdir(tmp)).filter(n => n.startsWith('grid-'))
    assert.deepEqual(left, [basename(running)])
  })
})
