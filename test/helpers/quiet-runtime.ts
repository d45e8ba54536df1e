import { DefaultLogger, makeTelemetryFilterString, Runtime } from '@temporalio/worker';

// Workers log every state change at INFO; tests show only what went wrong.
Runtime.install({
  logger: new DefaultLogger('WARN'),
  telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'ERROR' }), forward: {} } },
});
