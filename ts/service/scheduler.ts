// The device queue: runs ask for N devices (CUDA GPUs, or CPU slots on a host without GPUs) and
// wait, by priority then arrival, until that many are free. A device is held by at most one run.
//
// Policy (documented in docs/service.md): strict order — the head of the queue is placed first and
// nothing behind it is placed while it waits, so a large high-priority run is never starved by a
// stream of small ones (Determined's priority scheduler without preemption).

export interface Placement {
  runId: string;
  /** Device ids: CUDA ordinals for kind 'cuda' (→ CUDA_VISIBLE_DEVICES), slot numbers for 'cpu'. */
  devices: number[];
  kind: 'cuda' | 'cpu';
}

interface Waiting {
  runId: string;
  slots: number;
  priority: number;
  seq: number;
}

export class DeviceScheduler {
  private readonly free: Set<number>;
  private readonly held = new Map<string, number[]>();
  private readonly queue: Waiting[] = [];
  private seq = 0;

  constructor(
    readonly kind: 'cuda' | 'cpu',
    readonly capacity: number,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`device capacity must be a positive integer, got ${capacity}`);
    this.free = new Set(Array.from({ length: capacity }, (_, i) => i));
  }

  /** Queue a run; higher priority first, then first come first served. */
  enqueue(runId: string, slots: number, priority = 0): void {
    if (this.held.has(runId) || this.queue.some((w) => w.runId === runId)) throw new Error(`run ${runId} is already queued or placed`);
    if (!Number.isInteger(slots) || slots < 1) throw new Error(`run ${runId} asks for ${slots} devices; expected a positive integer`);
    if (slots > this.capacity) throw new Error(`run ${runId} asks for ${slots} ${this.kind} devices; this host has ${this.capacity}`);
    this.queue.push({ runId, slots, priority, seq: this.seq++ });
    this.queue.sort((a, b) => b.priority - a.priority || a.seq - b.seq);
  }

  /** Remove a queued run (cancel while queued). Returns whether it was waiting. */
  dequeue(runId: string): boolean {
    const at = this.queue.findIndex((w) => w.runId === runId);
    if (at < 0) return false;
    this.queue.splice(at, 1);
    return true;
  }

  /** Place as many queued runs as fit, in order; returns the new placements. */
  schedule(): Placement[] {
    const placed: Placement[] = [];
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (head.slots > this.free.size) break;
      const devices = [...this.free].sort((a, b) => a - b).slice(0, head.slots);
      for (const d of devices) this.free.delete(d);
      this.held.set(head.runId, devices);
      this.queue.shift();
      placed.push({ runId: head.runId, devices, kind: this.kind });
    }
    return placed;
  }

  /** Give a run's devices back (run ended, paused or failed). */
  release(runId: string): void {
    const devices = this.held.get(runId);
    if (!devices) return;
    for (const d of devices) this.free.add(d);
    this.held.delete(runId);
  }

  /** Mark devices as held by a run that was already running (store reconciliation at start-up). */
  adopt(runId: string, devices: number[]): void {
    for (const d of devices) {
      if (!this.free.has(d)) throw new Error(`device ${d} is already held; cannot adopt it for run ${runId}`);
    }
    for (const d of devices) this.free.delete(d);
    this.held.set(runId, [...devices]);
  }

  position(runId: string): number {
    return this.queue.findIndex((w) => w.runId === runId);
  }

  snapshot(): { free: number[]; held: Record<string, number[]>; queued: string[] } {
    return {
      free: [...this.free].sort((a, b) => a - b),
      held: Object.fromEntries(this.held),
      queued: this.queue.map((w) => w.runId),
    };
  }
}

/** CUDA_VISIBLE_DEVICES for a placement; CPU slots set nothing. */
export function deviceEnv(p: Placement): Record<string, string> {
  return p.kind === 'cuda' ? { CUDA_VISIBLE_DEVICES: p.devices.join(',') } : {};
}
