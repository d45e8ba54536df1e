/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // jose 6 ships ESM only; swc turns it (and our TypeScript) into CommonJS for jest's module system.
  transform: { '^.+\\.(t|j|mj)s$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }] },
  transformIgnorePatterns: ['/node_modules/(?!jose/)'],
  // src/cli/program.ts loads each command with import('./commands/<name>.js'), as Node needs; jest finds the .ts.
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  setupFiles: ['<rootDir>/test/helpers/quiet-runtime.ts'],
  globalSetup: '<rootDir>/test/helpers/global-setup.ts',
  globalTeardown: '<rootDir>/test/helpers/global-teardown.ts',
  // Each test file runs its own Temporal test server; two at a time fit a 2-core machine.
  maxWorkers: 2,
  // Generous: a busy 2-core machine runs the month-long time-skipped lifecycles several times slower.
  testTimeout: 180_000,
};
