// Rejection reasons (docs/protocol.md, "Rejection") and a per-reason counter.
export const REJECT_REASONS = [
  'malformed',
  'bad_signature',
  'oversized',
  'bad_version',
  'unknown_type',
  'wrong_run',
  'invalid_body',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export class WireRejection extends Error {
  constructor(
    readonly reason: RejectReason,
    detail: string,
  ) {
    super(`${reason}: ${detail}`);
    this.name = 'WireRejection';
  }
}

export class RejectCounters {
  private readonly counts = new Map<RejectReason, number>(REJECT_REASONS.map((r) => [r, 0]));

  add(reason: RejectReason): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
  }

  get total(): number {
    let n = 0;
    for (const v of this.counts.values()) n += v;
    return n;
  }

  /** Only the reasons that occurred, e.g. {bad_signature: 2}. */
  toJSON(): Partial<Record<RejectReason, number>> {
    const out: Partial<Record<RejectReason, number>> = {};
    for (const [k, v] of this.counts) if (v > 0) out[k] = v;
    return out;
  }
}
