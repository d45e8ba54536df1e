// The workflow bundle's entry point: what the worker's workflowsPath names.
export { keySetWorkflow } from './keyset';
export { supervisorWorkflow } from './supervisor';
export { alertDeliveryWorkflow } from './alert-delivery';
