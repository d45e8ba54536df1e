// The workflow bundle's entry point: what the worker's workflowsPath names.
export { keySetWorkflow } from './key-set';
export { supervisorWorkflow } from './supervisor';
export { alertDeliveryWorkflow } from './alert-delivery';
