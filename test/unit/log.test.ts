// The node's log file: rotated to <file>.1 once it passes its size, at start and while written;
// written again after a full disk, or after its dir was removed.
import assert from 'node:assert/strict'
import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { LOG_ROTATE_BYTES, closeLogging, configureLogging, logger } from '@grid/node'
import { run, tempDir } from '../helpers/index.js'

/**
 * Logs to `argv[3]` until a write fails (the file-size limit it runs under: a full disk), then
 * frees the room (truncates the file) and logs one more line a while later.
 */
const CHILD = `
import { statSync, truncateSync } from 'node:fs'
const [nodeUrl, file] = process.argv.slice(2)
const { configureLogging, closeLogging, logger } = await import(nodeUrl)
configureLogging({ stderr: 'silent', file, retryMs: 50 })
const log = logger('grid:test')
const pause = ms => new Promise(resolve => setTimeout(resolve, ms))
let size = -1
for (let i = 0; i < 1000; i++) {
  for (let j = 0; j < 10; j++) log.info('x'.repeat(1000))
  await pause(20)
  const now = statSync(file).size
  if (now === size) break // a write failed: the file no longer grows
  size = now
}
truncateSync(file, 0)
await pause(100)
log.warn('after the disk was freed')
await closeLogging()
process.stdout.write(String(size))
`

describe('log file', () => {
  it('is renamed to .1 and started afresh past its size, at open and while written, keeping the newest lines', async (t) => {
    const dir = await tempDir(t)
    const file = join(dir, 'grid.log')
    await writeFile(file, 'x'.repeat(1500) + '\n') // a log left over from before, already too big
    configureLogging({ stderr: 'silent', file, rotateBytes: 1000 })
    t.after(() => { configureLogging({ rotateBytes: LOG_ROTATE_BYTES }) })
    assert.equal((await stat(join(dir, 'grid.log.1'))).size, 1501, 'the old file rotated at open')
    const log = logger('grid:test')
    for (let i = 0; i < 40; i++) log.info(`line ${i} ${'y'.repeat(40)}`) // ~3,500 bytes: rotates again
    await closeLogging()
    const current = await readFile(file, 'utf8')
    const previous = await readFile(join(dir, 'grid.log.1'), 'utf8')
    assert.ok(current.length < 1000, `the current file stays under the size: ${current.length}`)
    assert.ok(previous.length >= 1000 && previous.length < 1100, `the previous one holds a file's worth: ${previous.length}`)
    assert.match(current, /line 39 /, 'the newest line is in the current file')
    assert.doesNotMatch(previous, /x{100}/, 'the oldest file was replaced')
    const lines = (previous + current).trim().split('\n').map(l => Number(/line (\d+) /.exec(l)?.[1]))
    assert.deepEqual(lines, lines.slice().sort((a, b) => a - b), 'in order across the two files')
    assert.equal(lines.at(-1), 39)
  })

  it('is written again once a full disk has room, without a restart', async (t) => {
    const dir = await tempDir(t)
    const file = join(dir, 'grid.log')
    const script = join(dir, 'child.mjs')
    await writeFile(script, CHILD)
    // 64 blocks (32 or 64 KiB by the shell); Node ignores SIGXFSZ: a write past it fails (EFBIG)
    const res = await run('sh', ['-c', 'ulimit -f 64 && exec "$@"', 'sh', process.execPath, script, import.meta.resolve('@grid/node'), file], { timeoutMs: 60_000 })
    assert.equal(res.code, 0, res.stderr)
    assert.ok(Number(res.stdout) > 0 && Number(res.stdout) <= 65536, `the log never filled up, so this proves nothing: ${res.stdout}`)
    assert.match(await readFile(file, 'utf8'), /after the disk was freed/)
  })

  it('is made again when its dir is removed (rm -rf of the cache dir) while the node runs', async (t) => {
    const dir = await tempDir(t)
    const file = join(dir, 'logs', 'grid.log')
    configureLogging({ stderr: 'silent', file, retryMs: 50 })
    t.after(async () => { await closeLogging(); configureLogging({ retryMs: 30_000 }) })
    const log = logger('grid:test')
    log.info('before')
    await rm(join(dir, 'logs'), { recursive: true, force: true })
    await new Promise(resolve => setTimeout(resolve, 100))
    log.warn('after the removal')
    await closeLogging()
    assert.match(await readFile(file, 'utf8'), /after the removal/)
  })
})
