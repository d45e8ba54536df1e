import type { Logger } from '../logger';

/**
 * Things to undo, undone in reverse order of their setup: the worker stops before the Temporal
 * server and the database it uses. A failing step is logged and the rest still run, so one stuck
 * resource does not leave the others running.
 */
export class Teardown {
  readonly #steps: { name: string; undo: () => unknown }[] = [];

  constructor(private readonly logger: Logger) {}

  add(name: string, undo: () => unknown): void {
    this.#steps.push({ name, undo });
  }

  async run(): Promise<void> {
    for (const { name, undo } of this.#steps.splice(0).reverse()) {
      try {
        await undo();
        this.logger.debug({ step: name }, `stopped ${name}`);
      } catch (error) {
        this.logger.warn({ err: error, step: name }, `could not stop ${name} cleanly`);
      }
    }
  }
}
