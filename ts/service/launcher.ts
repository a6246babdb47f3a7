// What the supervisor needs from the training path: start one run of an experiment and follow it.
// `controllerLauncher` (ts/service/controller-launcher.ts) implements it with the real controller
// (ts/controller); tests use the same real implementation.
export interface RunEvents {
  onStarted?(info: { pid: number | undefined }): void;
  onMetrics?(step: number, values: Record<string, number>): void;
  onCheckpoint?(c: { step: number; path: string; bytes: number }): void;
  /** runtime.nnodes > 1: node 0 is up and the other nodes may join from `joinFile`. */
  onJoin?(info: { joinFile: string; nnodes: number }): void;
}

export interface RunOutcome {
  status: 'completed' | 'failed' | 'canceled';
  steps: number;
  finalLoss: number | null;
  cause: string | null;
  /** The failure came from the input (a rank's ConfigError or DataError: `error` with
   *  `input_error: true`), so a restart would fail the same way. */
  inputError?: boolean;
  summary: Record<string, unknown>;
}

export interface LaunchedRun {
  /** Graceful stop: ranks finish the planned steps, write a checkpoint, exit. */
  stop(reason: 'canceled' | 'paused' | 'restart'): Promise<void>;
  /** Hard stop of the whole process group (SIGTERM → grace → SIGKILL). */
  kill(): Promise<void>;
  readonly done: Promise<RunOutcome>;
}

export interface LaunchRequest {
  experimentId: string;
  /** 1 for the first launch, counted across service restarts (from the store). */
  attempt: number;
  config: Record<string, unknown>;
  runDir: string;
  env: Record<string, string>;
  resumeFrom: string | null;
  events: RunEvents;
}

export type Launcher = (req: LaunchRequest) => Promise<LaunchedRun>;
