/**
 * Global options (before the command) and the small flag parser the commands share. Options are
 * checked once, unknown ones rejected by name, and the result frozen.
 */
import { defaultCacheDir, defaultConfigPath, defaultControlPath } from '@grid/node'
import { GridError, parseSize } from '@grid/protocol'

export interface GlobalOptions {
  cacheDir: string
  control: string
  configPath: string
  /** the config path was given (--config or GRID_CONFIG): it must exist */
  configExplicit: boolean
  json: boolean
  trimpath: boolean
  /** list the package graph even with no peer to place compiles on (for the critical path) */
  graph: boolean
  /**
   * `always`: every build runs with -toolexec=<shim>, so every compile goes through the node.
   * `auto`: only when, at the build's start, a peer could take a compile; otherwise go runs its
   * tools itself and only the cache goes through grid.
   */
  toolexec: ToolexecMode
  help: boolean
  version: boolean
}

export type ToolexecMode = 'always' | 'auto'
const TOOLEXEC_MODES: readonly ToolexecMode[] = ['always', 'auto']

export interface Parsed { options: Readonly<GlobalOptions>, command: string | undefined, rest: string[] }

export function usageError (message: string, hint = 'run `grid --help` for usage'): GridError {
  return new GridError('GRID_ERR_USAGE', message, { hint })
}

/** A size given to `flag` ("500M", "10G" or bytes); a bad one is a usage error naming the flag. */
export function sizeFlag (value: string, flag: string): number {
  try {
    return parseSize(value)
  } catch (err) {
    throw new GridError('GRID_ERR_USAGE', `${flag}: ${(err as Error).message}`, { cause: err, hint: (err as GridError).hint ?? 'use a number with an optional unit, e.g. 500M or 10G' })
  }
}

/** Parses `[global options] <command> [command args…]`; everything after the command is the command's. */
export function parseGlobal (argv: string[], env: NodeJS.ProcessEnv = process.env): Parsed {
  let cache: string | undefined
  let control: string | undefined
  let config: string | undefined
  let json = false
  let trimpath = true
  let graph = false
  let toolexec: string | undefined
  let help = false
  let version = false
  let i = 0
  for (; i < argv.length; i++) {
    const arg = argv[i] as string
    if (!arg.startsWith('-')) break
    const [name, inline] = splitFlag(arg)
    const value = (): string => {
      if (inline !== undefined) return inline
      const next = argv[++i]
      return flagValue(name, next, 'run `grid --help` for usage')
    }
    const on = (): boolean => boolFlag(name, inline, 'run `grid --help` for usage')
    switch (name) {
      case '--cache': cache = value(); break
      case '--control': control = value(); break
      case '--config': config = value(); break
      case '--json': json = on(); break
      case '--no-trimpath': trimpath = !on(); break
      case '--graph': graph = on(); break
      case '--toolexec': toolexec = value(); break
      case '-h': case '-help': case '--help': help = on(); break
      case '--version': version = on(); break
      default: throw usageError(`unknown option ${name}`)
    }
  }
  const cacheDir = cache ?? defaultCacheDir(env)
  const mode = toolexec ?? (env.GRID_TOOLEXEC === '' ? undefined : env.GRID_TOOLEXEC) ?? 'always'
  // A bad GRID_TOOLEXEC in the shell must not take the help that explains it (nor the version).
  const helpOnly = help || version || argv[i] === 'help'
  if (!(TOOLEXEC_MODES as readonly string[]).includes(mode) && !(helpOnly && toolexec === undefined)) {
    throw toolexec === undefined
      ? usageError(`GRID_TOOLEXEC must be always or auto, not ${JSON.stringify(mode)}`, 'set GRID_TOOLEXEC to always or auto, or unset it')
      : usageError(`--toolexec must be always or auto, not ${JSON.stringify(mode)}`)
  }
  const configExplicit = config !== undefined || (env.GRID_CONFIG ?? '') !== ''
  const options = Object.freeze({
    cacheDir,
    control: control ?? defaultControlPath(cacheDir, env),
    configPath: config ?? defaultConfigPath(env),
    configExplicit,
    json,
    trimpath,
    graph,
    toolexec: mode as ToolexecMode,
    help,
    version
  })
  return { options, command: argv[i], rest: argv.slice(i + 1) }
}

/** --json after one of grid's own commands, in the forms its own flags take. */
const JSON_FLAGS = ['--json', '-json']

/** The global options that take a value; the others are switches. */
const VALUE_OPTIONS: ReadonlySet<string> = new Set(['--cache', '--control', '--config', '--toolexec'])

/**
 * Whether `argv` asks for --json, read leniently before anything is checked, so that an error in
 * the options themselves is given in the form asked for: --json among the global options, or
 * after a command whose flags are grid's (`ownFlags`), in any form `takeJson` takes.
 */
export function asksJson (argv: string[], ownFlags: (command: string) => boolean): boolean {
  let json = false
  const see = (arg: string, names: string[]): void => {
    const [name, inline] = splitFlag(arg)
    if (names.includes(name)) json = inline !== 'false' && inline !== '0'
  }
  let i = 0
  for (; i < argv.length; i++) {
    const arg = argv[i] as string
    if (!arg.startsWith('-')) break
    see(arg, ['--json'])
    // a value of its own, not a flag (which parseGlobal refuses as a value)
    if (VALUE_OPTIONS.has(arg) && !(argv[i + 1] ?? '-').startsWith('-')) i++
  }
  const command = argv[i]
  if (command !== undefined && ownFlags(command)) for (const arg of argv.slice(i + 1)) see(arg, JSON_FLAGS)
  return json
}

/**
 * --json after one of grid's own commands: `grid peers --json` is what people type, and means
 * what it means before the command, in the same forms (`--json`, `--json=false`), and as
 * `-json`, as the commands' own flags are taken. Returns the rest without it, and its value if
 * it was there (the last one wins).
 */
export function takeJson (command: string, rest: string[]): { rest: string[], json: boolean | undefined } {
  let json: boolean | undefined
  const others = rest.filter(arg => {
    if (!arg.startsWith('-')) return true
    const [name, inline] = splitFlag(arg)
    if (!JSON_FLAGS.includes(name)) return true
    json = boolFlag(name, inline, `run \`grid ${command} --help\``)
    return false
  })
  return { rest: others, json }
}

export function splitFlag (arg: string): [string, string | undefined] {
  const eq = arg.indexOf('=')
  return eq < 0 ? [arg, undefined] : [arg.slice(0, eq), arg.slice(eq + 1)]
}

/** A flag's value from the next argument: missing, or another flag, is a usage error. */
function flagValue (name: string, next: string | undefined, hint: string): string {
  if (next === undefined) throw usageError(`${name} needs a value`, hint)
  if (next.startsWith('-') && next !== '-' && !/^-\d/.test(next)) {
    throw usageError(`${name} needs a value, got the flag ${next}`, `give it one, or write ${name}=${next} if that is the value`)
  }
  return next
}

/** A switch, alone (on) or as `=true`/`=false` (`=1`/`=0`), as Go's flag package takes them. */
function boolFlag (name: string, inline: string | undefined, hint: string): boolean {
  if (inline === undefined || inline === 'true' || inline === '1') return true
  if (inline === 'false' || inline === '0') return false
  throw usageError(`${name} is a switch: give it alone, or as ${name}=true or ${name}=false, not =${inline}`, hint)
}

/** `args` without any form of the command flag `name` (`--name`, `-name`, with or without `=value`). */
export function withoutFlag (args: string[], name: string): string[] {
  return args.filter(a => !a.startsWith('-') || splitFlag(a)[0].replace(/^--?/, '') !== name)
}

/** Parses a command's own flags from a fixed table; rejects anything else. */
type FlagKind = 'bool' | 'string' | 'list'
type FlagValue<K extends FlagKind> = K extends 'bool' ? boolean : K extends 'list' ? string[] : string

export function parseFlags<T extends Record<string, FlagKind>> (
  command: string, args: string[], table: T
): { flags: { [K in keyof T]?: FlagValue<T[K]> }, positional: string[] } {
  const flags: Record<string, boolean | string | string[]> = {}
  const positional: string[] = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    if (!arg.startsWith('-') || arg === '-') { positional.push(arg); continue }
    const [name, inline] = splitFlag(arg)
    const key = name.replace(/^--?/, '')
    const kind = table[key]
    if (kind === undefined) throw usageError(`unknown flag ${name} for grid ${command}`, `run \`grid ${command} --help\``)
    const hint = `run \`grid ${command} --help\``
    if (kind === 'bool') { flags[key] = boolFlag(name, inline, hint); continue }
    const v = inline ?? flagValue(name, args[++i], hint)
    if (kind === 'list') flags[key] = [...(flags[key] as string[] | undefined ?? []), v]
    else flags[key] = v
  }
  return { flags: flags as never, positional }
}

/** For a command that takes flags only: any positional argument is a usage error. */
export function noArguments (command: string, positional: string[]): void {
  if (positional.length > 0) throw usageError(`grid ${command} takes no arguments, got ${positional.join(' ')}`, `run \`grid ${command.split(' ')[0] as string} --help\``)
}
