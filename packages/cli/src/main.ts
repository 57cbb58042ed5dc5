/**
 * @grid/cli: `grid [global options] <command> [args]`. Parses the global options, dispatches to
 * one module per command, and renders errors (code, message, hint). Returns the exit code.
 */
import { GRID_VERSION } from '@grid/protocol'
import { BUILD_HELP, GO_COMMANDS, isGoCommand, runGo, type GoCommand } from './commands/build.js'
import { CACHE_HELP, cache } from './commands/cache.js'
import { DAEMON_HELP, daemon } from './commands/daemon.js'
import { ENV_HELP, env } from './commands/env.js'
import { STATUS_HELP, status } from './commands/status.js'
import { STOP_HELP, stop } from './commands/stop.js'
import { PEERS_HELP, peers } from './commands/peers.js'
import { INIT_HELP, init } from './commands/init.js'
import { asksJson, parseGlobal, takeJson, usageError, type GlobalOptions } from './options.js'
import { createOutput, renderError, renderHelp, type Output } from './output.js'

export { dieLikeGo } from './interrupt.js'

export const HELP = `grid: a peer-to-peer compile grid for Go

usage: grid [global options] <command> [arguments]

commands:
  build [go build args]   go build through the grid (cache + compile pool)
  install [go args]       go install through the grid
  run [go args]           go run through the grid (the build; the program runs here)
  test [go test args]     go test through the grid (test results cached too)
  vet [go vet args]       go vet through the grid (vet results cached too)
  env [--unset]           the environment that sends plain go commands through the node:
                          eval "$(grid env)"
  daemon [flags]          run a long-lived node on this workstation, in the office mesh
                          (--detach: in the background)
  stop                    stop the daemon
  status                  the node, its mesh addresses, its cache and what it has served
  peers                   the mesh members this node knows (toolchain, slots, load, rtt)
  init                    create the team's swarm key
  cache stats|gc|verify   inspect, trim or check the cache
  help [command]          help for a command

global options (before the command):
  --control SOCKET   node control socket (env GRID_CONTROL; default <cache>/grid.sock)
  --cache DIR        cache dir (env GRID_CACHE; default $XDG_CACHE_HOME/grid or ~/.cache/grid)
  --config FILE      config file (env GRID_CONFIG; default $XDG_CONFIG_HOME/grid/config.json,
                     else ~/.config/grid/config.json)
  --json             machine-readable output on stdout, errors too, and help as
                     {"command": …, "help": "<text>"} (also accepted, as --json, --json=false
                     or -json, after status, peers, cache, init, env, daemon and stop)
  --no-trimpath      do not add -trimpath (cache entries then stay tied to this checkout's path)
  --graph            build, install: list the package graph even when no peer can take
                     compiles, so the summary reports the build's critical path (costs
                     ~0.4-1.4 CPU-s on std)
  --toolexec MODE    always (default): every compile goes through the node; auto: only when a
                     peer can take compiles at the build's start, else go runs its tools itself
                     and only the cache goes through grid (env GRID_TOOLEXEC)
  --version          print the grid version
  -h, -help, --help  this help

environment:
  GRID_GO            the go command to use (default: go on PATH)
  DEBUG=grid:*       the node's debug log on stderr (it always logs to <cache>/logs/grid.log;
                     grid status names the running node's log file)`

const HELP_FLAGS = ['-h', '-help', '--help']

type Command = (args: string[], options: GlobalOptions, output: Output) => Promise<number>

const COMMANDS: Record<string, { run: Command, help: string }> = {
  ...Object.fromEntries((Object.keys(GO_COMMANDS) as GoCommand[]).map(sub => [sub, {
    run: async (a: string[], o: GlobalOptions, out: Output) => await runGo(sub, a, o, out),
    help: BUILD_HELP
  }])),
  daemon: { run: daemon, help: DAEMON_HELP },
  status: { run: status, help: STATUS_HELP },
  stop: { run: stop, help: STOP_HELP },
  cache: { run: cache, help: CACHE_HELP },
  peers: { run: peers, help: PEERS_HELP },
  init: { run: init, help: INIT_HELP },
  env: { run: env, help: ENV_HELP }
}

export async function main (argv: string[]): Promise<number> {
  // --json is global, but `grid peers --json` is what people type: after grid's own commands
  // it means the same. After build, test and the other go commands every argument is go's.
  const ownFlags = (command: string): boolean => !isGoCommand(command)
  let output = createOutput(asksJson(argv, ownFlags))
  try {
    const parsed = parseGlobal(argv)
    const { command } = parsed
    let { options, rest } = parsed
    if (command !== undefined && ownFlags(command)) {
      const taken = takeJson(command, rest)
      rest = taken.rest
      if (taken.json !== undefined) options = { ...options, json: taken.json }
    }
    output = createOutput(options.json)
    if (options.version) { output.out(options.json ? JSON.stringify({ version: GRID_VERSION }) : `grid ${GRID_VERSION}`); return 0 }
    if (command === undefined || command === 'help') {
      const asked = command === 'help' ? rest[0] : undefined
      const topic = asked === 'help' ? undefined : asked
      if (topic !== undefined && COMMANDS[topic] === undefined) throw usageError(`no help for unknown command ${topic}`)
      const text = topic === undefined ? HELP : (COMMANDS[topic] as { help: string }).help
      // `grid` alone is a usage error: help on stderr, exit 2 (with --json, the error on
      // stdout, as for every other). Asked for, it is output (as JSON with --json).
      if (command === undefined && !options.help) {
        if (options.json) throw usageError('no command given', 'run `grid --help` for the commands')
        output.err(text)
        return 2
      }
      renderHelp(output, text, topic)
      return 0
    }
    const entry = COMMANDS[command]
    if (entry === undefined) throw usageError(`unknown command ${command}`)
    // After the go commands the flags are go's, so only a leading -h, -help or --help asks for
    // grid's help (go would print its usage and exit 2); `go test ./... -args -h` passes through.
    const asksHelp = isGoCommand(command)
      ? HELP_FLAGS.includes(rest[0] ?? '')
      : rest.some(a => HELP_FLAGS.includes(a))
    if (options.help || asksHelp) {
      renderHelp(output, entry.help, command)
      return 0
    }
    return await entry.run(rest, options, output)
  } catch (err) {
    renderError(output, err)
    return (err as { code?: string }).code === 'GRID_ERR_USAGE' ? 2 : 1
  }
}
