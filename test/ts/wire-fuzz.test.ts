// Issue #12, "keep it fixed": property-based hostile frames (fast-check) fired at a running run's
// two sockets. Every generated frame set is invalid by construction (garbage, a wrong signature,
// or signed with the run key — as a broken rank holding DMFR_KEY would — yet breaking the header,
// the type for that socket, the run, the rank or the body), so each must be rejected and counted;
// the run must complete with the same losses, step for step, as the same run left alone.
// Bounded: FUZZ_MESSAGES messages per run (DMFR_FUZZ_MESSAGES), seed printed (DMFR_FUZZ_SEED).
import { createHmac } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import * as zmq from 'zeromq';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../ts/config/load.ts';
import { RunController, type MetricsEvent } from '../../ts/controller/index.ts';
import { CHANNELS, DELIMITER, MSG_TYPES } from '../../ts/wire/index.ts';
import { HAVE_PYTHON } from './helpers.ts';
import { log } from '../../ts/log.ts';

// Each rejection is a warning in the log: hundreds of them would bury the test's output.
log.level = process.env.DMFR_LOG_LEVEL ?? 'error';

const STEPS = 24;
const NPROC = 2;
const FUZZ_MESSAGES = Number(process.env.DMFR_FUZZ_MESSAGES ?? 300);
const SEED = Number(process.env.DMFR_FUZZ_SEED ?? Date.now() % 2 ** 31);

type Socket = 'control' | 'events';
interface Attack {
  socket: Socket;
  kind: string;
  frames: Buffer[];
}

const HEADER_FIELDS = ['version', 'msg_id', 'msg_type', 'run_id', 'rank', 'session', 'date'] as const;
const allowedOn = (s: Socket): readonly string[] => (s === 'control' ? CHANNELS.controlFromRank : CHANNELS.eventsFromRank);

function sign(key: Buffer, parts: Buffer[]): string {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** Every attack the generator can make; none of them is a valid message (see each comment). */
function attacks(runId: string, key: Buffer): fc.Arbitrary<Attack> {
  const socket = fc.constantFrom<Socket>('control', 'events');
  const frame = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
  // No delimiter, or too few frames, or an unsigned/wrongly signed message: malformed or
  // bad_signature (a random signature matches with probability 2^-256).
  const garbage = fc.record({ socket, frames: fc.array(frame, { minLength: 1, maxLength: 6 }) }).map((a) => ({ ...a, kind: 'garbage' }));
  const wrongSignature = fc
    .record({ socket, sig: fc.uint8Array({ minLength: 32, maxLength: 32 }), rest: fc.array(frame, { minLength: 2, maxLength: 4 }) })
    .map(({ socket, sig, rest }) => ({ socket, kind: 'bad signature', frames: [Buffer.from(DELIMITER), Buffer.from(Buffer.from(sig).toString('hex')), ...rest] }));

  const validHeader = (s: Socket) => ({ version: '1.0', msg_id: 'fuzz', msg_type: allowedOn(s)[0]!, run_id: runId, rank: 0, session: 'fuzz', date: new Date().toISOString() });
  // One definite violation of the header, each a rejection in decode or in the sender check.
  const headerBreak = (s: Socket): fc.Arbitrary<Record<string, unknown>> =>
    fc.oneof(
      fc.record({ version: fc.oneof(fc.constantFrom('2.0', '0.9', '1', ''), fc.string().filter((v) => !/^1\.[0-9]+$/.test(v))) }),
      fc.record({ msg_type: fc.oneof(fc.constantFrom(...MSG_TYPES), fc.string()).filter((t) => !allowedOn(s).includes(t)) }),
      fc.record({ run_id: fc.string().filter((r) => r !== runId) }),
      fc.record({ rank: fc.oneof(fc.integer({ min: NPROC, max: 2 ** 31 }), fc.integer({ min: -(2 ** 31), max: -1 }), fc.constant(null), fc.string(), fc.double({ noInteger: true })) }),
      fc.record({ session: fc.oneof(fc.constant(''), fc.integer()) }),
      fc.constantFrom(...HEADER_FIELDS).map((field) => ({ [field]: undefined })), // a required field missing
    );
  const json = (v: unknown) => Buffer.from(JSON.stringify(v) ?? 'null');
  const signedBadHeader = socket.chain((s) =>
    fc.record({ change: headerBreak(s), body: fc.jsonValue() }).map(({ change, body }) => {
      const header = json({ ...validHeader(s), ...change });
      const b = json(body);
      return { socket: s, kind: 'signed, bad header', frames: [Buffer.from(DELIMITER), Buffer.from(sign(key, [header, b])), header, b] };
    }),
  );
  // A valid header of a type allowed on that socket, but a body that is not a JSON object
  // (malformed) — or bytes that are not JSON at all.
  const badBody = fc.oneof(
    fc.oneof(fc.array(fc.jsonValue()), fc.integer(), fc.string(), fc.constant(null), fc.boolean()).map(json),
    frame.filter((b) => {
      try {
        const v = JSON.parse(b.toString('utf8'));
        return typeof v !== 'object' || v === null || Array.isArray(v);
      } catch {
        return true;
      }
    }),
  );
  const signedBadBody = socket.chain((s) =>
    fc.record({ type: fc.constantFrom(...allowedOn(s)), body: badBody, extra: fc.array(frame, { maxLength: 2 }) }).map(({ type, body, extra }) => {
      const header = json({ ...validHeader(s), msg_type: type });
      return { socket: s, kind: 'signed, bad body', frames: [Buffer.from(DELIMITER), Buffer.from(sign(key, [header, body, ...extra])), header, body, ...extra] };
    }),
  );
  return fc.oneof(garbage, wrongSignature, signedBadHeader, signedBadBody);
}

async function train(fuzz: ((c: RunController) => Promise<number>) | null) {
  const out = join(mkdtempSync(join(tmpdir(), 'dmfr-fuzz-')), 'run');
  const config = loadConfig({ preset: 'quick', steps: STEPS, nproc: NPROC, sets: ['optim.milestones=[]'] });
  const controller = new RunController({ config, outDir: out });
  const losses: number[] = [];
  const seen = new Map<number, number>();
  let fired: Promise<number> | null = null;
  controller.on('metrics', (m: MetricsEvent) => {
    seen.set(m.step, (seen.get(m.step) ?? 0) + 1);
    losses[m.step] = m.loss!;
    if (fuzz && m.step === 1 && !fired) fired = fuzz(controller);
  });
  const summary = await controller.start();
  return { summary, losses, seen, sent: fired ? await fired : 0 };
}

describe.skipIf(!HAVE_PYTHON)('hostile frames against a running run (fast-check)', () => {
  it(`rejects and counts each of ${FUZZ_MESSAGES} generated frame sets; training is unchanged`, async () => {
    const kinds = new Map<string, number>();
    const fuzzed = await train(async (controller) => {
      // The key every rank of the run has (DMFR_KEY): signed frames reach the checks after the signature.
      const key = (controller as unknown as { key: Buffer }).key;
      const generated = fc.sample(attacks(controller.runId, key), { numRuns: FUZZ_MESSAGES, seed: SEED });
      const dealer = new zmq.Dealer({ routingId: `${controller.runId}/0/fuzz`, linger: 2000 });
      const push = new zmq.Push({ linger: 2000 });
      dealer.connect(controller.endpoints.control);
      push.connect(controller.endpoints.events);
      for (const a of generated) {
        kinds.set(a.kind, (kinds.get(a.kind) ?? 0) + 1);
        await (a.socket === 'control' ? dealer : push).send(a.frames);
      }
      dealer.close();
      push.close();
      return generated.length;
    });
    const alone = await train(null);

    const rejected = Object.values(fuzzed.summary.wire_rejected ?? {}).reduce((a, b) => a + b, 0);
    process.stderr.write(
      `wire fuzz (seed ${SEED}): ${fuzzed.sent} sent ${JSON.stringify(Object.fromEntries(kinds))}, ` +
        `rejected ${JSON.stringify(fuzzed.summary.wire_rejected)}; run ${fuzzed.summary.status} at ${fuzzed.summary.steps} steps\n`,
    );
    expect(fuzzed.summary.status, fuzzed.summary.cause ?? '').toBe('completed');
    expect(fuzzed.sent).toBe(FUZZ_MESSAGES);
    expect(rejected).toBe(FUZZ_MESSAGES); // each one rejected, none slipped through
    expect(alone.summary.status, alone.summary.cause ?? '').toBe('completed');
    expect(alone.summary.wire_rejected).toEqual({});
    // The same training, step for step: every step logged once, the same losses.
    expect([...fuzzed.seen.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1)); // steps completed, 1 … STEPS
    expect([...fuzzed.seen.values()].every((n) => n === 1)).toBe(true);
    expect(fuzzed.losses).toEqual(alone.losses);
    expect(fuzzed.summary.final_loss).toBe(alone.summary.final_loss);
  }, 600_000);
});
