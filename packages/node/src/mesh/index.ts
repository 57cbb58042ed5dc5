export { Mesh, type MeshInit, type PeerView } from './mesh.js'
export { OwnLoad, type OwnLoadInit } from './load.js'
export { DEFAULT_PORT, ADVERT_TOPIC, ADVERT_PROTOCOL, HEARTBEAT_MS, PEER_TIMEOUT_MS } from './constants.js'
