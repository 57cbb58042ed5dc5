/**
 * A build's package graph and what follows from it: each package's remaining critical path
 * (its own cost plus the longest chain of packages that wait on it), which orders the compiles
 * (the scheduler's priority, as cmd/go's action priority), and, after the build, the measured
 * critical path, which bounds what any number of peers could have given.
 */
import type { GraphPackage } from '@grid/protocol'

export class Plan {
  private readonly packages = new Map<string, GraphPackage>()
  private readonly dependents = new Map<string, string[]>()
  private readonly remaining: Map<string, number>

  /** `cost` gives each package's expected compile time in ms. */
  constructor (packages: GraphPackage[], cost: (pkg: GraphPackage) => number) {
    for (const pkg of packages) this.packages.set(pkg.p, pkg)
    for (const pkg of packages) {
      for (const dep of pkg.i) {
        if (!this.packages.has(dep)) continue
        const list = this.dependents.get(dep)
        if (list === undefined) this.dependents.set(dep, [pkg.p])
        else list.push(pkg.p)
      }
    }
    const weights = new Map<string, number>()
    for (const pkg of packages) weights.set(pkg.p, cost(pkg))
    this.remaining = longestPaths(this.packages.keys(), weights, p => this.dependents.get(p) ?? [])
  }

  get size (): number { return this.packages.size }

  package (importPath: string): GraphPackage | undefined {
    return this.packages.get(importPath)
  }

  /**
   * Remaining critical path of a package in ms (higher: more urgent); undefined if not in the
   * graph. A variant `P [V]` (cmd/go builds P again for V: PGO, tests) ranks as P.
   */
  priority (importPath: string): number | undefined {
    return this.remaining.get(importPath) ?? this.remaining.get(variantOf(importPath).pkg)
  }

  /**
   * The critical path from measured compile times (packages not compiled weigh 0) and the sum
   * of all of them. A variant `P [V]` is a package of its own: its dependents are theirs built
   * for V too (`D [V]`), and V itself; for `go build cmd/...` the longest chain runs through
   * cmd/compile's PGO build of its imports.
   */
  criticalPath (measured: Map<string, number>): { ms: number, totalMs: number } {
    let totalMs = 0
    for (const ms of measured.values()) totalMs += ms
    const dependents = (key: string): string[] => {
      const { pkg, variant } = variantOf(key)
      const plain = this.dependents.get(pkg) ?? []
      if (variant === undefined) return plain
      return plain.flatMap(d => measured.has(`${d} [${variant}]`) ? [`${d} [${variant}]`] : d === variant ? [d] : [])
    }
    let ms = 0
    const nodes = new Set([...this.packages.keys(), ...measured.keys()])
    for (const length of longestPaths(nodes, measured, dependents).values()) ms = Math.max(ms, length)
    return { ms: Math.round(ms), totalMs: Math.round(totalMs) }
  }
}

/** `P [V]` → P and V; a plain import path has no variant. */
function variantOf (key: string): { pkg: string, variant: string | undefined } {
  const m = /^(\S+) \[(\S+)\]$/.exec(key)
  return m === null ? { pkg: key, variant: undefined } : { pkg: m[1] as string, variant: m[2] as string }
}

/**
 * For every node: its weight plus the heaviest chain of dependents above it. Depth first with a
 * stack of its own, not the call stack: `build-graph` admits MAX_GRAPH_PACKAGES, and a chain of
 * ~10,000 imports ran out of call stack (RangeError), leaving the build without a plan.
 */
function longestPaths (nodes: Iterable<string>, weight: Map<string, number>, dependents: (node: string) => string[]): Map<string, number> {
  const memo = new Map<string, number>()
  const visiting = new Set<string>()
  /** a node being visited: its dependents, the next to visit, and the heaviest chain above it so far */
  interface Frame { node: string, above: string[], next: number, heaviest: number }
  const stack: Frame[] = []
  const enter = (node: string): void => {
    visiting.add(node)
    stack.push({ node, above: dependents(node), next: 0, heaviest: 0 })
  }
  for (const root of nodes) {
    if (memo.has(root)) continue
    enter(root)
    while (stack.length > 0) {
      const top = stack[stack.length - 1] as Frame
      if (top.next < top.above.length) {
        const d = top.above[top.next++] as string
        const known = memo.get(d)
        if (known !== undefined) top.heaviest = Math.max(top.heaviest, known)
        else if (!visiting.has(d)) enter(d) // one being visited: an import cycle (go list -e reports broken graphs), cut
        continue
      }
      stack.pop()
      visiting.delete(top.node)
      const length = (weight.get(top.node) ?? 0) + top.heaviest
      memo.set(top.node, length)
      const below = stack[stack.length - 1]
      if (below !== undefined) below.heaviest = Math.max(below.heaviest, length)
    }
  }
  return memo
}
