/** A real libp2p node on loopback (TCP, noise, yamux), stopped when the test ends. */
import { noise } from '@chainsafe/libp2p-noise'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p, type Libp2pOptions } from 'libp2p'
import { defer } from './index.js'

type Ctx = Parameters<typeof defer>[0]

/** `options`: libp2p options over the defaults here (services, connectionMonitor…). */
export async function libp2pNode (t: Ctx, options: Partial<Libp2pOptions> = {}): Promise<{ libp2p: Libp2p, key: PrivateKey, id: string }> {
  const key = await generateKeyPair('Ed25519')
  const libp2p = await createLibp2p({
    privateKey: key,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...options
  }) as Libp2p
  defer(t, async () => { await libp2p.stop() })
  return { libp2p, key, id: libp2p.peerId.toString() }
}
