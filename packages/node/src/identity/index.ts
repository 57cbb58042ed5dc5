/**
 * The node's identity: an Ed25519 key kept in the cache dir (mode 0600), so a node keeps its
 * PeerId across restarts. Its PeerId is the producer recorded on every cache entry it writes.
 */
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'

export const KEY_FILE = 'peer.key'

export interface Identity {
  privateKey: PrivateKey
  peerId: string
}

export async function loadIdentity (cacheDir: string): Promise<Identity> {
  const path = join(cacheDir, KEY_FILE)
  let privateKey: PrivateKey
  try {
    privateKey = privateKeyFromProtobuf(await readFile(path))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    privateKey = await generateKeyPair('Ed25519')
    await mkdir(cacheDir, { recursive: true })
    // Written whole to a temp file, then linked into place: link never replaces an existing
    // file, so when two processes start at once both end up with the key that got there first,
    // and nobody ever reads a half-written one.
    const tmp = `${path}.${process.pid}.${Date.now()}.tmp`
    await writeFile(tmp, privateKeyToProtobuf(privateKey), { mode: 0o600 })
    try {
      await link(tmp, path)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
      privateKey = privateKeyFromProtobuf(await readFile(path))
    } finally {
      await unlink(tmp).catch(() => {})
    }
  }
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString() }
}
