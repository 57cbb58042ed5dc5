// The node's identity: its key in the cache dir, and the PeerId kept beside it.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { loadIdentity } from '@grid/node/server'
import { errorCode } from '@grid/protocol'
import { tempDir } from '../helpers/index.js'

describe('identity', () => {
  it('keeps its PeerId across loads, read from peer.id without loading the key', async (t) => {
    const dir = await tempDir(t)
    const first = await loadIdentity(dir)
    assert.match(first.peerId, /^12D3KooW/)
    const idFile = await readFile(join(dir, 'peer.id'), 'utf8')
    assert.ok(idFile.includes(first.peerId))
    const second = await loadIdentity(dir)
    assert.equal(second.peerId, first.peerId)
    const key = await second.privateKey()
    assert.equal(key.type, 'Ed25519')
  })

  it('ignores a peer.id written for another key, and rewrites it', async (t) => {
    const dir = await tempDir(t)
    const { peerId } = await loadIdentity(dir)
    await writeFile(join(dir, 'peer.id'), `${'0'.repeat(64)} 12D3KooWsomeoneelse\n`)
    assert.equal((await loadIdentity(dir)).peerId, peerId)
    assert.ok((await readFile(join(dir, 'peer.id'), 'utf8')).includes(peerId))
  })

  it('refuses the key when peer.id names the key file but another PeerId', async (t) => {
    const dir = await tempDir(t)
    await loadIdentity(dir)
    const [sum] = (await readFile(join(dir, 'peer.id'), 'utf8')).split(' ')
    await writeFile(join(dir, 'peer.id'), `${sum} 12D3KooWsomeoneelse\n`)
    const forged = await loadIdentity(dir)
    assert.equal(forged.peerId, '12D3KooWsomeoneelse')
    await assert.rejects(forged.privateKey(), (err: unknown) => errorCode(err) === 'GRID_ERR_MESH_START')
  })
})
