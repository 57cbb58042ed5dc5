#!/usr/bin/env node
// The quick start's main job: build the bundled Go module (test/fixtures/gomod: embed, asm,
// cgo, generics, internal packages, two commands) through grid on an embedded node, from an
// empty cache, then again after `go clean -cache`, and compare the binaries byte for byte with
// plain `go build -trimpath`. Everything lives in a temp dir that is removed at the end.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const mod = join(root, 'test/fixtures/gomod')
const grid = join(root, 'packages/cli/bin/grid.js')
const dir = mkdtempSync(join(tmpdir(), 'grid-demo-'))
// The demo stays on this machine: its node's mesh listens on loopback only, without mDNS.
writeFileSync(join(dir, 'config.json'), JSON.stringify({ mdns: false, listen: ['/ip4/127.0.0.1/tcp/0'] }))
let gocaches = 0
const env = () => ({
  ...process.env,
  GOCACHE: join(dir, `gocache-${++gocaches}`),
  GRID_CACHE: join(dir, 'grid'),
  GRID_CONTROL: join(dir, 'grid.sock'),
  GRID_CONFIG: join(dir, 'config.json')
})

function step (title, cmd, args) {
  process.stderr.write(`\n$ ${title}\n`)
  const r = spawnSync(cmd, args, { cwd: mod, env: env(), stdio: ['ignore', 'inherit', 'inherit'] })
  if (r.status !== 0) { process.stderr.write(`demo: step failed (exit ${r.status})\n`); cleanup(1) }
}

function cleanup (code) {
  rmSync(dir, { recursive: true, force: true })
  process.exit(code)
}

step('go build -trimpath -o ref/ ./...          (plain Go, empty GOCACHE: the reference)', 'go', ['build', '-trimpath', '-o', join(dir, 'ref') + '/', './...'])
step('grid build -o cold/ ./...                 (embedded node, empty grid cache)', process.execPath, [grid, 'build', '-o', join(dir, 'cold') + '/', './...'])
step('grid build -o warm/ ./...                 (after go clean -cache: every package from the grid cache)', process.execPath, [grid, 'build', '-o', join(dir, 'warm') + '/', './...'])

let same = true
for (const out of ['cold', 'warm']) {
  for (const name of readdirSync(join(dir, 'ref'))) {
    const ok = readFileSync(join(dir, 'ref', name)).equals(readFileSync(join(dir, out, name)))
    same &&= ok
    process.stderr.write(`${ok ? 'identical' : 'DIFFERENT'}: ${out}/${name} vs ref/${name}\n`)
  }
}
step('./warm/alpha', join(dir, 'warm', 'alpha'), [])
cleanup(same ? 0 : 1)
