#!/usr/bin/env node
'use strict';

// The CLI runs from the compiled output; `npm run build` (part of `npm start`) produces it.
let cli;
try {
  cli = require('../dist/src/cli/main.js');
} catch (error) {
  if (error && error.code === 'MODULE_NOT_FOUND' && String(error.message).includes('dist/src/cli/main.js')) {
    console.error('keyturn: the CLI is not built yet: run `npm run build` (or `npm start`) first');
    process.exit(1);
  }
  throw error;
}
cli.main();
