/**
 * @grid/node/embed: the node alone, for a process that runs one inside itself (`grid build`
 * with no daemon). `@grid/node/server` also loads the remote worker, its sandboxes and more
 * for tests and the daemon: ~100 ms that a no-op build would pay for nothing.
 */
export { GridNode, type GridNodeInit, type MeshOptions } from './node.js'
