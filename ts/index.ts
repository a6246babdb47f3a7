// dmfr's public TypeScript API: configs, the run controller, the wire, the store, the samplers.
export { loadConfig, resolveLayers, parseSet, readConfigFile, deepMerge, ConfigError, type ConfigIssue, type LoadOptions } from './config/load.ts';
export { PRESETS, METHOD_SAMPLER } from './config/presets.ts';
export { MATCHED_ARMS } from './config/arms.ts';
export { RunConfig, type MethodName } from './config/schema.ts';
export {
  RunController,
  runExperiment,
  type RunOptions,
  type RunSummary,
  type RunStatus,
  type RankInfo,
  type MetricsEvent,
} from './controller/index.ts';
export { Store, TERMINAL_STATES, type RunState, type RunRow, type TransitionRow, type MetricRow } from './store/index.ts';
export * as wire from './wire/index.ts';
export { createSampler, SamplerError, type Sampler, type DatasetMeta, type PlanChunk, type GlobalBatch } from './sampler/index.ts';
export { log } from './log.ts';
export { Client, ApiRequestError, type LiveEvent, type ExperimentInfo, type CreateExperimentBody, type StudyInfo, type StudyCellInfo, type StudySpecBody } from './sdk/client.ts';
export { createService, serve, type Service, type ServiceOptions } from './service/service.ts';
export { PythonHelpers, PythonCallError } from './pyhelpers.ts';
