/**
 * The pipe between a node and its spawner (`grid-shim spawner`, packages/node/shim/spawner.go):
 * the node asks it to start the compiles the node runs itself, because Go starts a child without
 * copying the node's address space (docs/protocol.md, "The spawner"). Same frames as the control
 * socket (frame.go, frame.ts), its own messages, checked on receipt like every other.
 */
import { validateFields, type Kind } from './messages.js'

type Id = { id: number }

export type SpawnerRequest =
  /** `env` as `K=V` lines; `nice` lowers the child's priority; output past `outputCap` bytes is dropped */
  | Id & { type: 'spawn', file: string, args: string[], cwd: string, env: string[], nice?: number, outputCap: number }
  | Id & { type: 'spawn-kill', signal: 'SIGTERM' | 'SIGKILL' }

export type SpawnerReply =
  /** `signal`: what ended the child, when a signal did (its `exitCode` is then -1) */
  | Id & { type: 'spawn-exit', exitCode: number, signal?: string, output: Uint8Array }
  /** the child could not be started, or its output not read */
  | Id & { type: 'spawn-failed', message: string }

export type SpawnerMessage = SpawnerRequest | SpawnerReply

const FIELDS: Record<SpawnerMessage['type'], Record<string, Kind>> = {
  spawn: { file: 'str', args: 'strs', cwd: 'str', env: 'strs', nice: 'optuint', outputCap: 'uint' },
  'spawn-kill': { signal: 'str' },
  'spawn-exit': { exitCode: 'int', signal: 'optstr', output: 'bin' },
  'spawn-failed': { message: 'str' }
}

/** Checks a decoded value against the spawner's field table and returns it typed. */
export function validateSpawnerMessage (value: unknown, from = 'the spawner'): SpawnerMessage {
  return validateFields<SpawnerMessage>(FIELDS, value, from)
}
