// The tests' name for it: a free port on loopback for a server a test starts.
export { freeLoopbackPort as freePort } from '../../src/runtime/port-check';
