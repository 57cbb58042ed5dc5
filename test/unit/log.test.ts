// The node's log file: rotated to <file>.1 once it passes its size, at start and while written.
import assert from 'node:assert/strict'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { LOG_ROTATE_BYTES, closeLogging, configureLogging, logger } from '@grid/node'
import { tempDir } from '../helpers/index.js'

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
})
