import { DefaultLogger, makeTelemetryFilterString, Runtime } from '@temporalio/worker';

// Workers log state changes at INFO and every failed attempt at WARN; tests provoke failures on purpose.
Runtime.install({
  logger: new DefaultLogger('ERROR'),
  telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'ERROR' }), console: {} } },
});
