/**
 * The node's record beside its control socket, `<socket>.json`: the pid of the process that
 * listens there, the file it logs to, and which socket file it made (inode and change time).
 * A client whose request the node does not answer cannot ask it who it is: it reads this instead,
 * so that its hint names the real log and a `kill -9 <pid>` the user can paste.
 *
 * The record counts only for the socket it names: a client checks that the socket it connected
 * to is that file (a record left by a node that died names another one, even at an inode reused
 * since), and reads only a regular file of its own user's (not a link), as it connects only to
 * such a socket (client.ts). While the socket accepts connections the process that made it is
 * alive, so its pid is not one reused since. Written whole or not at all (files.ts); a node
 * that cannot write it (a full disk) leaves none, and the hint then says where to look instead.
 */
import { constants, type BigIntStats } from 'node:fs'
import { open, unlink } from 'node:fs/promises'
import { resolve } from 'node:path'
import { writeFileAtomic } from '../files.js'

/** Appended to the control socket's path. */
export const RECORD_SUFFIX = '.json'

/** More than a record ever holds (a pid, a socket id, a path): anything larger is not one. */
const MAX_RECORD_BYTES = 16 * 1024

export interface NodeRecord {
  pid: number
  /** the absolute path of the node's log file, or null when it logs to none */
  log: string | null
  /** the socket file it made: `socketId` of its lstat */
  socket: string
}

/** Which socket file this is: its inode and change time (an inode alone is reused once freed). */
export function socketId (st: BigIntStats): string {
  return `${st.ino}:${st.ctimeNs}`
}

export async function writeRecord (socketPath: string, socket: BigIntStats, log: string | undefined): Promise<void> {
  const record: NodeRecord = { pid: process.pid, log: log === undefined ? null : resolve(log), socket: socketId(socket) }
  await writeFileAtomic(socketPath + RECORD_SUFFIX, JSON.stringify(record) + '\n')
}

export async function removeRecord (socketPath: string): Promise<void> {
  await unlink(socketPath + RECORD_SUFFIX).catch(() => {})
}

/** The record of the node that made the socket `socket` at `socketPath`, or undefined when there is none that counts. */
export async function readRecord (socketPath: string, socket: string): Promise<NodeRecord | undefined> {
  let file
  try {
    file = await open(socketPath + RECORD_SUFFIX, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0))
  } catch {
    return undefined
  }
  try {
    const st = await file.stat()
    if (!st.isFile() || st.size > MAX_RECORD_BYTES || (process.getuid !== undefined && st.uid !== process.getuid())) return undefined
    const value: unknown = JSON.parse(await file.readFile('utf8'))
    if (typeof value !== 'object' || value === null) return undefined
    const { pid, log, socket: made } = value as Record<string, unknown>
    if (!Number.isSafeInteger(pid) || (pid as number) <= 0 || (log !== null && typeof log !== 'string') || made !== socket) return undefined
    return { pid: pid as number, log, socket }
  } catch {
    return undefined
  } finally {
    await file.close()
  }
}
