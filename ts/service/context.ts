// What every route plugin receives: the stores, the live event bus and the supervisor.
import type { EventBus } from './bus.ts';
import type { ArtifactStore, ServiceStore, StudyStore } from './db.ts';
import type { PythonResult } from './python-cli.ts';
import type { StudyManager } from './studies.ts';
import type { Supervisor } from './supervisor.ts';

export interface ServiceContext {
  store: ServiceStore;
  artifacts: ArtifactStore;
  bus: EventBus;
  supervisor: Supervisor;
  dataDir: string;
  /** Directories whose files the API may name (datasets, evaluation inputs); the data dir by default. */
  dataRoots: string[];
  /** Runs `python -m dmfr.cli ARGS… --json` (ts/service/python-cli.ts: the last stdout line). */
  pythonJson(args: string[]): Promise<PythonResult>;
  /** Studies (ts/service/studies.ts); buildApp makes them over `store` when not given (createService
   *  gives them, and starts the manager after the supervisor's reconcile). */
  studyStore?: StudyStore;
  studies?: StudyManager;
}
