/**
 * Noise with the swarm prologue, and a log line when a handshake fails. Noise mixes the
 * prologue into the handshake hash: a peer without the same swarm key cannot complete the
 * handshake, so it gets no connection and can open no protocol at all. Members say why in
 * their log instead of failing silently (DESIGN §8.1).
 */
import { noise } from '@chainsafe/libp2p-noise'
import type { ConnectionEncrypter } from '@libp2p/interface'

type NoiseComponents = Parameters<ReturnType<typeof noise>>[0]

export interface HandshakeFailure {
  direction: 'inbound' | 'outbound'
  remoteAddr: string
  remotePeer: string | undefined
  error: Error
}

export function memberNoise (prologue: Uint8Array, onFailure: (failure: HandshakeFailure) => void): (components: NoiseComponents) => ConnectionEncrypter {
  const factory = noise({ prologueBytes: prologue })
  return (components) => {
    const inner = factory(components)
    const describe = (connection: unknown): string => String((connection as { remoteAddr?: unknown }).remoteAddr ?? 'unknown address')
    const guarded = Object.create(inner) as ConnectionEncrypter
    guarded.secureInbound = async (connection, options) => {
      try {
        return await inner.secureInbound(connection, options)
      } catch (error) {
        onFailure({ direction: 'inbound', remoteAddr: describe(connection), remotePeer: undefined, error: error as Error })
        throw error
      }
    }
    guarded.secureOutbound = async (connection, options) => {
      try {
        return await inner.secureOutbound(connection, options)
      } catch (error) {
        onFailure({ direction: 'outbound', remoteAddr: describe(connection), remotePeer: options?.remotePeer?.toString(), error: error as Error })
        throw error
      }
    }
    return guarded
  }
}
