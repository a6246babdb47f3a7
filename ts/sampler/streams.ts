// A stream walks one pool of samples through its own epochs (docs/sampling.md, "Streams").
// Position p of a stream lies in epoch ⌊p / n⌋; each epoch is a fresh permutation keyed by
// (seed, stream id, epoch), so every sample of the pool appears exactly once per epoch and any
// position is reachable directly. The current epoch's permutation is cached (plus the previous
// one, for steps that straddle an epoch boundary) and the next one is built while this one is drawn.
import { hashTuple, IncrementalShuffle, mix32 } from './prng.ts';

export interface SampleStream {
  /** Positions per epoch. */
  readonly epochLength: number;
  /** The dataset sample index at stream position `pos` (a non-negative safe integer). */
  at(pos: number): number;
}

const PREFETCH_BURST = 16_384; // swaps: well under a millisecond

/**
 * Per-epoch permutations of a base array. The two most recent epochs are kept; the next epoch's
 * shuffle is carried out a little with every draw (`prefetch`), in step with the current epoch's
 * progress, so crossing an epoch boundary costs no pause — at MS1M scale a whole shuffle would
 * stall the controller's event loop for a few hundred milliseconds (bench/sampler.ts).
 */
class EpochPermutations {
  private recent: Array<{ epoch: number; perm: Int32Array }> = [];
  private pending: { epoch: number; shuffle: IncrementalShuffle } | null = null;

  constructor(
    private readonly base: Int32Array,
    private readonly seed: number,
    private readonly streamId: number,
  ) {}

  private start(epoch: number): IncrementalShuffle {
    return new IncrementalShuffle(this.base, hashTuple(this.seed, this.streamId, epoch));
  }

  get(epoch: number): Int32Array {
    const hit = this.recent.find((r) => r.epoch === epoch);
    if (hit) return hit.perm;
    let perm: Int32Array;
    if (this.pending?.epoch === epoch) {
      perm = this.pending.shuffle.finish();
      this.pending = null;
    } else {
      perm = this.start(epoch).finish();
    }
    this.recent.unshift({ epoch, perm });
    if (this.recent.length > 2) this.recent.pop();
    return perm;
  }

  /** Brings epoch `epoch`'s shuffle to the fraction `drawn / total` of its swaps. */
  prefetch(epoch: number, drawn: number, total: number): void {
    if (this.pending?.epoch !== epoch) {
      if (this.recent.some((r) => r.epoch === epoch)) return;
      this.pending = { epoch, shuffle: this.start(epoch) };
    }
    const shuffle = this.pending.shuffle;
    const want = Math.ceil(((this.base.length - 1) * drawn) / total);
    // Work in bursts: a tight swap loop overlaps its cache misses, one swap per draw does not.
    if (shuffle.done < want) shuffle.advanceTo(want + PREFETCH_BURST);
  }
}

/**
 * Walks the concatenated epochs of `perms` by global position: the current epoch's permutation is
 * cached and the next one is shuffled in bursts as the current one is drawn.
 */
class EpochCursor {
  private curEpoch = -1;
  private cur: Int32Array = new Int32Array(0);

  constructor(
    private readonly perms: EpochPermutations,
    readonly epochLength: number,
  ) {}

  /** The permuted item at global position `pos`, and the epoch it falls in. */
  at(pos: number): { item: number; epoch: number } {
    const n = this.epochLength;
    const epoch = Math.floor(pos / n);
    if (epoch !== this.curEpoch) {
      this.cur = this.perms.get(epoch);
      this.curEpoch = epoch;
    }
    const offset = pos - epoch * n;
    this.perms.prefetch(epoch + 1, offset + 1, n);
    return { item: this.cur[offset]!, epoch };
  }
}

/** Uniform over samples: each sample of the pool once per epoch, in a fresh order each epoch. */
export class PermutedStream implements SampleStream {
  readonly epochLength: number;
  private readonly cursor: EpochCursor;

  constructor(pool: Int32Array, seed: number, streamId: number) {
    this.epochLength = pool.length;
    this.cursor = new EpochCursor(new EpochPermutations(pool, seed, streamId), pool.length);
  }

  at(pos: number): number {
    return this.cursor.at(pos).item;
  }
}

function gcd(a: number, b: number): number {
  while (b !== 0) {
    const t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/**
 * Identity-balanced (for long-tailed data, docs/sampling.md): an epoch is a permutation of the
 * pool's identities, each identity once; an identity's v-th visit takes one of its images by an
 * affine walk r ↦ (a·r + b) mod c over its c images, with a coprime to c and (a, b) keyed by
 * (seed, stream, identity, ⌊v / c⌋), so every image of an identity is used once per c visits.
 */
export class IdentityBalancedStream implements SampleStream {
  readonly epochLength: number;
  private readonly offsets: Int32Array; // CSR: images of identity slot s are members[offsets[s]..offsets[s+1])
  private readonly members: Int32Array;
  private readonly cursor: EpochCursor;
  private readonly imageKey: number; // keys the per-identity image walks
  // The current walk of each identity (a pure function of (seed, identity, cycle), cached).
  private readonly walkA: Int32Array;
  private readonly walkB: Int32Array;
  private readonly walkCycle: Float64Array;

  constructor(
    pool: Int32Array,
    labels: Int32Array,
    seed: number,
    streamId: number,
  ) {
    // Group the pool by label (a counting sort over the labels present, pool order kept within one).
    let maxLabel = -1;
    for (let i = 0; i < pool.length; i++) maxLabel = Math.max(maxLabel, labels[pool[i]!]!);
    const slotOf = new Int32Array(maxLabel + 1).fill(-1);
    const counts: number[] = [];
    for (let i = 0; i < pool.length; i++) {
      const label = labels[pool[i]!]!;
      let s = slotOf[label]!;
      if (s < 0) {
        s = counts.length;
        slotOf[label] = s;
        counts.push(0);
      }
      counts[s]!++;
    }
    this.offsets = new Int32Array(counts.length + 1);
    for (let s = 0; s < counts.length; s++) this.offsets[s + 1] = this.offsets[s]! + counts[s]!;
    const fill = this.offsets.slice(0, counts.length);
    this.members = new Int32Array(pool.length);
    for (let i = 0; i < pool.length; i++) {
      const s = slotOf[labels[pool[i]!]!]!;
      this.members[fill[s]!++] = pool[i]!;
    }
    this.epochLength = counts.length;
    this.imageKey = hashTuple(seed, streamId, 0x1d);
    this.walkA = new Int32Array(counts.length);
    this.walkB = new Int32Array(counts.length);
    this.walkCycle = new Float64Array(counts.length).fill(-1);
    const slots = new Int32Array(counts.length);
    for (let s = 0; s < slots.length; s++) slots[s] = s;
    this.cursor = new EpochCursor(new EpochPermutations(slots, seed, streamId), counts.length);
  }

  at(pos: number): number {
    const { item: slot, epoch } = this.cursor.at(pos);
    const start = this.offsets[slot]!;
    const c = this.offsets[slot + 1]! - start;
    if (c === 1) return this.members[start]!;
    // The identity is visited once per epoch, so its visit number is the epoch number.
    const cycle = Math.floor(epoch / c);
    const r = epoch - cycle * c;
    if (this.walkCycle[slot] !== cycle) this.newWalk(slot, cycle, c);
    return this.members[start + ((this.walkA[slot]! * r + this.walkB[slot]!) % c)]!;
  }

  /** Draws the affine walk (a, b) of identity `slot`'s images for its `cycle`-th round of c visits. */
  private newWalk(slot: number, cycle: number, c: number): void {
    const h = mix32(mix32(this.imageKey ^ slot) ^ cycle);
    let a = 1 + (mix32(h ^ 0x5bd1e995) % (c - 1)); // in [1, c-1]
    while (gcd(a, c) !== 1) a = a === c - 1 ? 1 : a + 1;
    this.walkA[slot] = a;
    this.walkB[slot] = h % c;
    this.walkCycle[slot] = cycle;
  }
}

/** The stream for `pool` under the sampler.identity_balanced setting. */
export function makeStream(
  pool: Int32Array,
  labels: Int32Array,
  identityBalanced: boolean,
  seed: number,
  streamId: number,
): SampleStream {
  return identityBalanced
    ? new IdentityBalancedStream(pool, labels, seed, streamId)
    : new PermutedStream(pool, seed, streamId);
}
