/**
 * The V8 heap of a node in a mesh. Such a node keeps ~18 MB of live objects and, while it ships
 * compiles, allocates fast (streams, frames, archives of ~0.5 MB). V8 kept the old generation's
 * limit only 9–12 MB above the live heap and began a full mark-compact after nearly every
 * scavenge: 32–40 per cold `std` build with remote compiles, against 3 for the same build
 * compiled locally; over a third of the requester node's CPU went to the collector
 * (docs/benchmarks/remote-timeline.md).
 *
 * Letting the old generation grow to four times its live size before the next full collection
 * (V8's `--heap-growing-percent`, read each time the limit is computed, so it takes effect at the
 * next collection) took those collections to 4–5 and the node's CPU down by a tenth to a
 * quarter. The price is memory: the old generation may reach ~70 MB before a full collection
 * where it stopped at ~27 MB.
 */
import { setFlagsFromString } from 'node:v8'

const HEAP_GROWING_PERCENT = 300

let tuned = false

/** Sets the heap's growth for this process once; a node calls it when it joins a mesh. */
export function growHeapForMesh (): void {
  if (tuned) return
  tuned = true
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
}
