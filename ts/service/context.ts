// What every route plugin receives: the stores, the live event bus and the supervisor.
import type { EventBus } from './bus.ts';
import type { ArtifactStore, ServiceStore } from './db.ts';
import type { Supervisor } from './supervisor.ts';

export interface ServiceContext {
  store: ServiceStore;
  artifacts: ArtifactStore;
  bus: EventBus;
  supervisor: Supervisor;
  dataDir: string;
  /** Runs `python -m dmfr.cli ARGS… --json` and returns the parsed last stdout line. */
  pythonJson(args: string[]): Promise<unknown>;
}
