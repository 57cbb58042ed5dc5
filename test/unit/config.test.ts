// The node's config file: defaults, sizes, and a clear error for a bad value.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { DEFAULT_TASK_MEMORY, checkMultiaddr, loadConfig } from '@grid/node'
import { MAX_SLOTS } from '@grid/protocol'
import { tempDir } from '../helpers/index.js'

describe('config', () => {
  it('reads taskMemory as a size, defaults it, and refuses one no compile could start under', async (t) => {
    const dir = await tempDir(t, 'grid-config')
    const file = join(dir, 'config.json')
    assert.equal((await loadConfig(file)).taskMemory, DEFAULT_TASK_MEMORY) // no file: the defaults
    await writeFile(file, JSON.stringify({ taskMemory: '8G', cacheMax: '20G' }))
    const config = await loadConfig(file)
    assert.equal(config.taskMemory, 8 * 1024 ** 3)
    assert.equal(config.cacheMax, 20 * 1024 ** 3)
    await writeFile(file, JSON.stringify({ taskMemory: '100M' }))
    await assert.rejects(loadConfig(file), (err: { code?: string, message: string }) =>
      err.code === 'GRID_ERR_CONFIG' && err.message.includes('at least 1G'))
    // a bad value in the file is the file's error, and names the key
    for (const [key, value] of [['taskMemory', 'lots'], ['cacheMax', '10Q'], ['cacheMax', -5], ['cacheMax', '0'], ['offload', 'sometimes'], ['acceptRemote', 'maybe'], ['trust', 'all'], ['verify', 120], ['verify', ''], ['verify', '0x10'], ['verify', ' 5']] as const) {
      await writeFile(file, JSON.stringify({ [key]: value }))
      await assert.rejects(loadConfig(file), (err: { code?: string, message: string }) =>
        err.code === 'GRID_ERR_CONFIG' && err.message.startsWith(`${file}: "${key}" must be`), `${key}: ${JSON.stringify(value)}`)
    }
    await writeFile(file, JSON.stringify({ taskMemry: '8G' }))
    await assert.rejects(loadConfig(file), (err: { code?: string, message: string }) =>
      err.code === 'GRID_ERR_CONFIG' && err.message.includes('unknown key "taskMemry"') && err.message.includes('taskMemory'))
  })

  it('refuses "slots" over what an advert may offer, naming the maximum: its adverts would be refused by every member', async (t) => {
    const dir = await tempDir(t, 'grid-config')
    const file = join(dir, 'config.json')
    await writeFile(file, JSON.stringify({ slots: MAX_SLOTS }))
    assert.equal((await loadConfig(file)).slots, MAX_SLOTS)
    await writeFile(file, JSON.stringify({ slots: MAX_SLOTS + 1 }))
    await assert.rejects(loadConfig(file), (err: { code?: string, message: string }) =>
      err.code === 'GRID_ERR_CONFIG' && err.message === `${file}: "slots" must be at most ${MAX_SLOTS}`)
  })

  it('reads compileHeap as a size in whole MiB, 0 for the compiler\'s own, and refuses one too small', async (t) => {
    const dir = await tempDir(t, 'grid-config')
    const file = join(dir, 'config.json')
    assert.equal((await loadConfig(file)).compileHeapMB, undefined) // no file: the pool's default
    await writeFile(file, JSON.stringify({ compileHeap: '1G' }))
    assert.equal((await loadConfig(file)).compileHeapMB, 1024)
    await writeFile(file, JSON.stringify({ compileHeap: 0 }))
    assert.equal((await loadConfig(file)).compileHeapMB, 0)
    for (const value of ['1M', '100T', 'big']) {
      await writeFile(file, JSON.stringify({ compileHeap: value }))
      await assert.rejects(loadConfig(file), (err: { code?: string, message: string }) =>
        err.code === 'GRID_ERR_CONFIG' && err.message.startsWith(`${file}: "compileHeap" must be`), value)
    }
  })

  it('takes listen and bootstrap addresses that parse as multiaddrs and names the one that does not', async (t) => {
    const dir = await tempDir(t, 'grid-config')
    const file = join(dir, 'config.json')
    const good = ['/ip4/10.0.0.5/tcp/4770']
    await writeFile(file, JSON.stringify({ listen: ['/ip4/0.0.0.0/tcp/4770'], bootstrap: good }))
    assert.deepEqual((await loadConfig(file)).bootstrap, good)
    await writeFile(file, JSON.stringify({ bootstrap: [...good, '10.0.0.6:4770'] }))
    await assert.rejects(loadConfig(file), (err: { code?: string, message: string }) =>
      err.code === 'GRID_ERR_CONFIG' && err.message.includes('"bootstrap": not a multiaddr: 10.0.0.6:4770'))
    await assert.rejects(checkMultiaddr('/ip4/999.0.0.1/tcp/1', 'command line'), /command line: not a multiaddr/)
  })
})
