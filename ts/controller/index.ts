export { RunController, runExperiment, type RunOptions, type RankInfo, type MetricsEvent } from './controller.ts';
export type { RunSummary, RunStatus } from './summary.ts';
export { launchRanks, pythonExecutable, pythonEnv, torchrunArgs, REPO_ROOT } from './launch.ts';
export { terminate, runPids, isAlive } from './processes.ts';
export { newRunId, newKey } from './ids.ts';
