/**
 * Whether a compile the shim ran on a `compile-here` grant produced its archive. The node sees
 * only the connection close as the compiler the shim became exits: the same for a compile that
 * succeeded, one that failed (a syntax error) and one that was killed (a Ctrl-C of the build,
 * cmd/go stopping its tools after another package failed). The `-o` file tells them apart:
 * cmd/compile writes it at the end of a compile that succeeded and removes it on every error
 * (base.ErrorExit), and cmd/go gives each compile a fresh object directory (`$WORK/bNNN/`,
 * `$WORK` itself new for each go command), so that no earlier file stands there. An `-o` written
 * since the grant is a compile that compiled; the time check keeps out a file a client left
 * from before. Killed while it writes the archive, a compile counts as done: it was nearly.
 */
import { stat } from 'node:fs/promises'
import { outputOf } from '../remote/parse.js'
import { FILE_CLOCK_SLACK_MS } from './sources.js'

/** @param since when the compile was granted (ms since the epoch) */
export async function wroteOutput (args: string[], cwd: string, since: number): Promise<boolean> {
  const out = outputOf(args, cwd)
  if (out === undefined) return false // the compiler picks a name we do not know: nothing says it compiled
  const st = await stat(out).catch(() => undefined)
  return st !== undefined && st.isFile() && st.mtimeMs >= since - FILE_CLOCK_SLACK_MS
}
