// The wire between the TypeScript controller and a real Python rank (python -m dmfr.wire_peer),
// plus hostile input from raw ZeroMQ sockets: every bad message is rejected, counted by reason,
// and the link keeps serving the real rank.
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import * as zmq from 'zeromq';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../ts/config/load.ts';
import { REPO_ROOT } from '../../ts/controller/launch.ts';
import {
  ControllerLink,
  DELIMITER,
  decode,
  encode,
  MSG_TYPES,
  SendQueue,
  WireRejection,
  type Message,
  type RejectReason,
} from '../../ts/wire/index.ts';
import { HAVE_PYTHON, PYTHON, waitFor } from './helpers.ts';

const runId = 'r-wire-test';
const key = randomBytes(32);
const rankId = { runId, rank: 0, session: 'feedface' };

describe('framing', () => {
  it('round-trips header, body and typed buffers', () => {
    const indices = Int32Array.from({ length: 12 }, (_, i) => i * 7 - 3);
    const domains = Int16Array.from({ length: 12 }, (_, i) => i % 3);
    const frames = encode(key, rankId, 'ready', { rank: 0, num_samples: 12, num_classes: 3, domains: [], start_step: 0 }, [
      { name: 'labels', shape: [12], array: indices },
      { name: 'domains', shape: [12], array: domains },
      { name: 'pair', shape: [12], array: new Int32Array(12).fill(-1) },
    ]);
    expect(frames[0]!.toString()).toBe(DELIMITER);
    const sig = createHmac('sha256', key).update(Buffer.concat(frames.slice(2))).digest('hex');
    expect(frames[1]!.toString()).toBe(sig);
    const msg = decode(frames, { key, runId, channel: 'controlFromRank' });
    expect(msg.header).toMatchObject({ version: '1.0', msg_type: 'ready', run_id: runId, rank: 0, session: 'feedface' });
    expect(Array.from(msg.buffers.labels as Int32Array)).toEqual(Array.from(indices));
    expect(msg.buffers.domains).toBeInstanceOf(Int16Array);
  });

  it('rejects each kind of bad message with its reason', () => {
    const good = () => encode(key, rankId, 'credit', { chunks: 2 });
    const reason = (frames: Buffer[], channel: 'controlFromRank' | 'eventsFromRank' = 'controlFromRank', max?: number) => {
      try {
        decode(frames, { key, runId, channel, maxMessageBytes: max });
      } catch (e) {
        expect(e).toBeInstanceOf(WireRejection);
        return (e as WireRejection).reason;
      }
      return 'accepted';
    };
    expect(reason(good())).toBe('accepted');
    const tampered = good();
    tampered[3] = Buffer.from('{"chunks": 3}');
    expect(reason(tampered)).toBe('bad_signature');
    expect(reason(encode(randomBytes(32), rankId, 'credit', { chunks: 2 }))).toBe('bad_signature');
    const unsigned = good();
    unsigned[1] = Buffer.alloc(0);
    expect(reason(unsigned)).toBe('bad_signature');
    expect(reason(good().slice(0, 3))).toBe('malformed');
    expect(reason([randomBytes(40), randomBytes(64), randomBytes(10), randomBytes(10)])).toBe('malformed');
    expect(reason(good(), 'controlFromRank', 100)).toBe('oversized');
    expect(reason(encode(key, rankId, 'metrics' as 'credit', { chunks: 1 }))).toBe('unknown_type'); // metrics go on events
    expect(reason(encode(key, { ...rankId, runId: 'other' }, 'credit', { chunks: 1 }))).toBe('wrong_run');
    expect(() => decode(good(), { key, runId, channel: 'controlFromRank', identity: Buffer.from(`${runId}/0/someone-else`) })).toThrow(/wrong_run: header .* disagrees with routing identity/);
    expect(decode(good(), { key, runId, channel: 'controlFromRank', identity: Buffer.from(`${runId}/0/feedface`) }).body).toEqual({ chunks: 2 });
    expect(reason(encode(key, rankId, 'credit', { chunks: 0 }))).toBe('invalid_body');
    expect(reason(encode(key, rankId, 'bye', { reason: 'bored' as 'stopped', last_step: 1 }), 'eventsFromRank')).toBe('invalid_body');
  });
});

describe('SendQueue', () => {
  it('serialises concurrent sends on one zeromq.js socket, in order', async () => {
    const push = new zmq.Push({ linger: 0 });
    const pull = new zmq.Pull({ linger: 0 });
    await pull.bind('tcp://127.0.0.1:*');
    // Without the queue, a second send while one is pending (no peer yet) throws (zeromq.js 6).
    const first = push.send('a');
    await expect((async () => push.send('b'))()).rejects.toThrow(/busy/i);
    push.connect(pull.lastEndpoint!);
    await first;
    // Through the queue: 200 callers at once on a socket whose first send has to wait for a peer.
    const queued = new zmq.Push({ linger: 0 });
    const errors: Error[] = [];
    const queue = new SendQueue(queued, (e) => errors.push(e));
    const all = Promise.all(Array.from({ length: 200 }, (_, i) => queue.send([Buffer.from(String(i))])));
    await new Promise((r) => setTimeout(r, 50));
    expect(queue.size).toBe(200);
    queued.connect(pull.lastEndpoint!);
    const sent = await all;
    expect(sent.every(Boolean)).toBe(true);
    expect(errors).toEqual([]);
    const got: string[] = [];
    for await (const [frame] of pull) {
      const v = frame!.toString();
      if (v === 'a' || v === 'b') continue;
      got.push(v);
      if (got.length === 200) break;
    }
    expect(got).toEqual(Array.from({ length: 200 }, (_, i) => String(i)));
    queue.close();
    expect(await queue.send([Buffer.from('late')])).toBe(false);
    queued.close();
    push.close();
    pull.close();
  });
});

/** Frames signed with the run key but with a chosen header, for version/type/run attacks. */
function forged(header: Record<string, unknown>, body: unknown, k = key): Buffer[] {
  const h = Buffer.from(JSON.stringify({ version: '1.0', msg_id: 'x', msg_type: 'credit', run_id: runId, rank: 0, session: 'evil', date: new Date().toISOString(), ...header }));
  const b = Buffer.from(JSON.stringify(body));
  const sig = createHmac('sha256', k).update(h).update(b).digest('hex');
  return [Buffer.from(DELIMITER), Buffer.from(sig), h, b];
}

describe.skipIf(!HAVE_PYTHON)('controller ↔ Python rank (dmfr.wire_peer)', () => {
  const link = new ControllerLink({ runId, key, bind: '127.0.0.1', maxMessageBytes: 1 << 20 });
  const sockets: Array<zmq.Dealer | zmq.Push> = [];
  afterAll(() => {
    link.close();
    for (const s of sockets) s.close();
  });

  it('exchanges every message type and rejects hostile input without going down', async () => {
    const endpoints = await link.bind();
    const received: Message[] = [];
    const rejections: RejectReason[] = [];
    link.on('rejected', (r) => rejections.push(r));
    const config = loadConfig({ preset: 'quick' });
    let credit = 0;
    let nextStep = 0;
    let identity: Buffer | null = null;
    const sentPlans: Array<{ first: number; indices: number[]; domains: number[]; pair: number[] }> = [];
    const shard = 4;
    const sendPlans = () => {
      while (credit > 0 && nextStep < 16) {
        const n = 8;
        const indices = Int32Array.from({ length: n * shard }, (_, i) => (nextStep * shard + i) % 32);
        const domains = Int16Array.from(indices, (v) => v % 2);
        const pair = Int32Array.from(indices, (_, i) => (i % 2 === 1 ? i - 1 : -1));
        void link.send(identity!, 'plan', { first_step: nextStep, num_steps: n, shard_size: shard, last: nextStep + n >= 16, meta_test: null }, [
          { name: 'indices', shape: [n, shard], array: indices },
          { name: 'domains', shape: [n, shard], array: domains },
          { name: 'pair', shape: [n, shard], array: pair },
        ]);
        sentPlans.push({ first: nextStep, indices: [...indices], domains: [...domains], pair: [...pair] });
        nextStep += n;
        credit--;
      }
    };
    let hostileDone: Promise<void> | null = null;
    link.on('message', (msg, id) => {
      received.push(msg);
      switch (msg.header.msg_type) {
        case 'hello':
          identity = id;
          // Attack first; answer the real rank only once every bad message has been counted.
          hostileDone = attack(endpoints).then(async () => {
            await waitFor(() => rejections.length >= EXPECTED_TOTAL, 10_000, 'the hostile messages to be counted');
            await link.send(identity!, 'config', { config: config as unknown as Record<string, unknown>, resume: null });
            await link.send(identity!, 'heartbeat', {});
          });
          break;
        case 'credit':
          credit += (msg.body as { chunks: number }).chunks;
          sendPlans();
          break;
        case 'error':
          void link.send(identity!, 'stop', { reason: 'test over', final_step: 15 });
          break;
      }
    });

    const peer = spawn(PYTHON, ['-m', 'dmfr.wire_peer', '--plans', '2', '--credit', '2', '--timeout', '30'], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        PYTHONPATH: join(REPO_ROOT, 'python'),
        DMFR_CONTROL_ENDPOINT: endpoints.control,
        DMFR_EVENTS_ENDPOINT: endpoints.events,
        DMFR_RUN_ID: runId,
        DMFR_KEY: key.toString('hex'),
        RANK: '0',
        WORLD_SIZE: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    peer.stdout.on('data', (d) => (stdout += d));
    peer.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => peer.on('exit', (c) => r(c)));
    await hostileDone;
    expect(code, `peer failed:\n${stderr}\n${stdout}`).toBe(0);

    // The controller side saw every rank message type, each decoded and schema-checked.
    await waitFor(() => received.some((m) => m.header.msg_type === 'bye'), 5000, 'bye');
    const types = new Set(received.map((m) => m.header.msg_type));
    for (const t of ['hello', 'ready', 'credit', 'metrics', 'heartbeat', 'checkpoint-saved', 'error', 'bye']) expect(types).toContain(t);
    const ready = received.find((m) => m.header.msg_type === 'ready')!;
    expect(ready.buffers.labels).toBeInstanceOf(Int32Array);
    expect(Array.from(ready.buffers.labels as Int32Array)).toEqual(Array.from({ length: 32 }, (_, i) => i % 4));
    expect(Array.from(ready.buffers.pair as Int32Array).slice(0, 4)).toEqual([-1, 0, -1, 2]);
    expect(received.find((m) => m.header.msg_type === 'metrics')!.body).toMatchObject({ step: 15, loss: 1.5, terms: { L_cls: 1.5 } });
    expect(received.find((m) => m.header.msg_type === 'error')!.body).toMatchObject({ type: 'PeerError' });

    // The rank side saw every controller message type, with the exact plan buffers we sent.
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l));
    const got = lines.filter((l) => l.type).map((l) => l.type);
    expect(new Set(got)).toEqual(new Set(['config', 'heartbeat', 'plan', 'stop']));
    expect(lines.find((l) => l.type === 'config').body.config).toEqual(Object.keys(config).sort());
    const plans = lines.filter((l) => l.type === 'plan');
    expect(plans).toHaveLength(2);
    plans.forEach((p, i) => {
      expect(p.body.first_step).toBe(sentPlans[i]!.first);
      expect(p.buffers.indices).toEqual({ dtype: 'int32', shape: [8, shard], values: sentPlans[i]!.indices });
      expect(p.buffers.domains.values).toEqual(sentPlans[i]!.domains);
      expect(p.buffers.domains.dtype).toBe('int16');
      expect(p.buffers.pair.values).toEqual(sentPlans[i]!.pair);
    });
    expect(lines.find((l) => l.type === 'stop').body).toMatchObject({ final_step: 15 });
    expect(lines.at(-1)).toEqual({ peer: 'done', ok: true, rejected: {} });

    // Every hostile message was rejected and counted under its reason.
    expect(link.rejected.toJSON()).toEqual(EXPECTED);
    expect(MSG_TYPES.length).toBe(11);
  }, 90_000);

  const EXPECTED: Partial<Record<RejectReason, number>> = {
    bad_signature: 3,
    malformed: 4,
    oversized: 1,
    bad_version: 1,
    unknown_type: 2,
    wrong_run: 2,
    invalid_body: 1,
  };
  const EXPECTED_TOTAL = Object.values(EXPECTED).reduce((a, b) => a + b, 0);

  async function attack(endpoints: { control: string; events: string }): Promise<void> {
    const evil = { runId, rank: 0, session: 'evil' };
    const dealer = new zmq.Dealer({ routingId: `${runId}/0/evil`, linger: 0 });
    const push = new zmq.Push({ linger: 0 });
    sockets.push(dealer, push);
    dealer.connect(endpoints.control);
    push.connect(endpoints.events);
    const tampered = encode(key, evil, 'credit', { chunks: 1 });
    tampered[3] = Buffer.from('{"chunks":100}');
    await dealer.send(tampered); // bad_signature
    await dealer.send(encode(randomBytes(32), evil, 'credit', { chunks: 1 })); // bad_signature
    await push.send([Buffer.from(DELIMITER), Buffer.alloc(0), ...encode(key, evil, 'heartbeat', { step: 1 }).slice(2)]); // bad_signature
    await dealer.send(encode(key, evil, 'credit', { chunks: 1 }).slice(0, 3)); // malformed: truncated
    await push.send(randomBytes(256)); // malformed: one random frame
    await push.send([randomBytes(10), randomBytes(64), randomBytes(30), randomBytes(30)]); // malformed: no delimiter
    const ready = encode(key, evil, 'ready', { rank: 0, num_samples: 4, num_classes: 1, domains: [], start_step: 0 }, [
      { name: 'labels', shape: [4], array: new Int32Array(4) },
      { name: 'domains', shape: [4], array: new Int16Array(4) },
      { name: 'pair', shape: [4], array: new Int32Array(4) },
    ]);
    await dealer.send(forged({ msg_type: 'ready' }, JSON.parse(ready[3]!.toString()))); // malformed: buffers described, none sent
    // oversized: every frame under the cap (a frame over it never arrives: the socket's
    // ZMQ_MAXMSGSIZE drops the peer, test/ts/wire-limits.test.ts), the whole over it
    await push.send([Buffer.from(DELIMITER), Buffer.from('0'.repeat(64)), Buffer.alloc(768 << 10), Buffer.alloc(768 << 10)]);
    await dealer.send(forged({ version: '2.0' }, { chunks: 1 })); // bad_version
    await dealer.send(forged({ msg_type: 'plan' }, {})); // unknown_type: a controller-only type from a rank
    await push.send(forged({ msg_type: 'gossip' }, {})); // unknown_type
    await dealer.send(forged({ run_id: 'r-other' }, { chunks: 1 })); // wrong_run
    await dealer.send(forged({ session: 'not-the-identity' }, { chunks: 1 })); // wrong_run: header ≠ routing identity
    await dealer.send(forged({}, { chunks: 'many' })); // invalid_body
  }
});
