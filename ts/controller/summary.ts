// What a finished run reports (`dmfr run --json` prints this object as its last stdout line).
import type { RejectReason } from '../wire/reject.ts';

export type RunStatus = 'completed' | 'failed' | 'canceled';

export interface RunSummary {
  run_id: string;
  status: RunStatus;
  /** Optimizer steps finished (the last finished step + 1). */
  steps: number;
  final_loss: number | null;
  run_dir: string;
  /** Global samples per second over the logged steps (steps_per_s × train.batch_size). */
  samples_per_s: number | null;
  /** Steps per second between the first and the last metrics message. */
  steps_per_s: number | null;
  /** Time rank 0 spent waiting for plans / its step time, over the logged steps. */
  plan_wait_fraction: number | null;
  wire_rejected: Partial<Record<RejectReason, number>>;
  /** Why the run failed or was canceled; null when it completed. */
  cause: string | null;
  duration_s: number;
  /** Rank 0's own wall time from its first step to its last (its `bye`); null without one. */
  train_time_s: number | null;
  /** Metrics messages for a step already seen (should be 0). */
  metrics_duplicates: number;
}

/** Accumulates rank 0's metrics into the summary's rates. */
export class RateMeter {
  private first: { step: number; at: number } | null = null;
  private last: { step: number; at: number } | null = null;
  private waitS = 0;
  private busyS = 0;
  private prevStep: number | null = null;

  add(step: number, at: number, planWaitS: number, stepTimeS: number): void {
    if (this.first === null) this.first = { step, at };
    else {
      // The first message's timing includes start-up; count from the second one on.
      const span = this.prevStep === null ? 1 : Math.max(1, step - this.prevStep);
      this.waitS += planWaitS;
      this.busyS += stepTimeS * span;
    }
    this.last = { step, at };
    this.prevStep = step;
  }

  get stepsPerS(): number | null {
    if (!this.first || !this.last || this.last.step === this.first.step || this.last.at <= this.first.at) return null;
    return (this.last.step - this.first.step) / ((this.last.at - this.first.at) / 1000);
  }

  get planWaitFraction(): number | null {
    return this.busyS > 0 ? this.waitS / this.busyS : null;
  }
}
