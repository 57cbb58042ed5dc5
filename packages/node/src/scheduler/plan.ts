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
    this.remaining = this.longestPaths(weights)
  }

  get size (): number { return this.packages.size }

  package (importPath: string): GraphPackage | undefined {
    return this.packages.get(importPath)
  }

  /** Remaining critical path of a package in ms (higher: more urgent); undefined if not in the graph. */
  priority (importPath: string): number | undefined {
    return this.remaining.get(importPath)
  }

  /**
   * The critical path from measured compile times (packages not compiled weigh 0) and the sum
   * of all of them.
   */
  criticalPath (measured: Map<string, number>): { ms: number, totalMs: number } {
    let totalMs = 0
    for (const ms of measured.values()) totalMs += ms
    let ms = 0
    for (const length of this.longestPaths(measured).values()) ms = Math.max(ms, length)
    return { ms: Math.round(ms), totalMs: Math.round(totalMs) }
  }

  /** For every package: its weight plus the heaviest chain of dependents above it. */
  private longestPaths (weight: Map<string, number>): Map<string, number> {
    const memo = new Map<string, number>()
    const visiting = new Set<string>()
    const visit = (p: string): number => {
      const known = memo.get(p)
      if (known !== undefined) return known
      if (visiting.has(p)) return 0 // an import cycle (go list -e reports broken graphs): cut it
      visiting.add(p)
      let above = 0
      for (const d of this.dependents.get(p) ?? []) above = Math.max(above, visit(d))
      visiting.delete(p)
      const length = (weight.get(p) ?? 0) + above
      memo.set(p, length)
      return length
    }
    for (const p of this.packages.keys()) visit(p)
    return memo
  }
}
