/** Processes of this machine, by pid. */

/**
 * Whether a process with this pid exists here: only "no such process" says it does not (one of
 * another user's is there all the same). A pid names the same process to everyone in one pid
 * namespace only.
 */
export function processExists (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}
