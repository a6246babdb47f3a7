// Counter-based randomness for the samplers (docs/sampling.md, "Randomness").
// Every random choice is a pure function of (seed, stream, counter…): a 32-bit integer hash
// (lowbias32 finaliser, C. Wellons' "hash prospector") keys a small fast generator (sfc32,
// PractRand-clean) that drives one Fisher–Yates shuffle per epoch. Nothing depends on how many
// numbers were drawn before, so step k is computable without replaying steps 0..k-1.

/** lowbias32: a bijective 32-bit avalanche mixer. */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Splits a safe integer (possibly negative, possibly ≥ 2^32) into two 32-bit words. */
function words(n: number): [number, number] {
  const hi = Math.floor(n / 0x1_0000_0000);
  return [(n - hi * 0x1_0000_0000) >>> 0, hi >>> 0];
}

/** Hashes a tuple of safe integers to 32 bits; order matters, length matters. */
export function hashTuple(...parts: number[]): number {
  let h = mix32(0x9e3779b9 ^ parts.length);
  for (const p of parts) {
    const [lo, hi] = words(p);
    h = mix32(h ^ lo);
    h = mix32((h + 0x632be5ab) ^ hi);
  }
  return h;
}

/** sfc32 (Chris Doty-Humphrey's Small Fast Counting generator), 32-bit output. */
export class Sfc32 {
  private a: number;
  private b: number;
  private c: number;
  private d = 1;

  constructor(key: number) {
    this.a = mix32(key ^ 0xa511e9b3);
    this.b = mix32(key ^ 0x63d83595);
    this.c = mix32(key ^ 0x1b873593);
    for (let i = 0; i < 12; i++) this.next(); // standard warm-up
  }

  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /**
   * Uniform integer in [0, n) for 1 ≤ n ≤ 2^32 from a 53-bit fraction: no modulo (slow on
   * doubles in V8) and a bias below n / 2^53, far under anything a training run could notice.
   */
  below(n: number): number {
    const x = (this.next() * 0x20_0000 + (this.next() >>> 11)) / 0x20_0000_0000_0000;
    return Math.min(Math.floor(x * n), n - 1);
  }
}

/**
 * A Fisher–Yates shuffle of a copy of `base` keyed by `key`, which can be carried out a few swaps
 * at a time: the result does not depend on how the work was split.
 */
export class IncrementalShuffle {
  readonly perm: Int32Array;
  private readonly rng: Sfc32;
  private i: number; // positions > i are final

  constructor(base: Int32Array, key: number) {
    this.perm = Int32Array.from(base);
    this.rng = new Sfc32(key);
    this.i = this.perm.length - 1;
  }

  /** Swaps done so far, out of perm.length - 1. */
  get done(): number {
    return this.perm.length - 1 - this.i;
  }

  /** Carries the shuffle on until at least `swaps` swaps are done (or it is complete). */
  advanceTo(swaps: number): this {
    const a = this.perm;
    const stop = Math.max(0, a.length - 1 - swaps);
    for (let i = this.i; i > stop; i--) {
      const j = this.rng.below(i + 1);
      const t = a[i]!;
      a[i] = a[j]!;
      a[j] = t;
    }
    this.i = Math.min(this.i, stop);
    return this;
  }

  finish(): Int32Array {
    return this.advanceTo(Infinity).perm;
  }
}

/** Shuffles a copy of `base` (Fisher–Yates) with the generator keyed by `key`. */
export function shuffled(base: Int32Array, key: number): Int32Array {
  return new IncrementalShuffle(base, key).finish();
}
