// Issue #12, item 3: the controller's receiving sockets cap a message at the protocol's limit
// (ZMQ_MAXMSGSIZE = max_message_bytes), so an oversized message is refused before it is buffered.
// The link runs in a child process of its own (test/ts/fixtures/link-memory-child.ts) so that its
// peak resident memory measures it alone.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import * as zmq from 'zeromq';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../ts/controller/launch.ts';
import { DELIMITER, encode } from '../../ts/wire/index.ts';
import './helpers.ts'; // test log level

const CHILD = join(REPO_ROOT, 'test', 'ts', 'fixtures', 'link-memory-child.ts');
const runId = 'r-limits';
const key = randomBytes(32);

interface Report {
  endpoint: string;
  rss: number;
  peak: number;
  accepted: number;
  rejected: Record<string, number>;
}

/** The child's link and a way to ask it for a report. */
async function startLink(cap: number): Promise<{ child: ChildProcessWithoutNullStreams; first: Report; report: () => Promise<Report> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, 'link', String(cap)], {
    cwd: REPO_ROOT,
    env: { ...process.env, DMFR_TEST_KEY: key.toString('hex'), DMFR_TEST_RUN: runId },
  });
  child.stderr.on('data', (d) => process.stderr.write(d));
  const lines: Interface = createInterface({ input: child.stdout });
  const pending: ((r: Report) => void)[] = [];
  lines.on('line', (line) => pending.shift()?.(JSON.parse(line) as Report));
  const next = () => new Promise<Report>((resolve) => pending.push(resolve));
  const first = await next();
  const report = () => {
    const r = next();
    child.stdin.write('report\n');
    return r;
  };
  return { child, first, report };
}

/** Asks for reports until one satisfies `done` (60 s at most). */
async function until(report: () => Promise<Report>, done: (r: Report) => boolean, what: string): Promise<Report> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await report();
    if (done(r)) return r;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(r)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('a message over max_message_bytes', () => {
  it('is refused at the socket, never buffered, and the link keeps serving', async () => {
    const CAP = 4 << 20;
    const SIZE = 128 << 20; // one frame of 128 MiB: 32 × the cap
    const { child, first, report } = await startLink(CAP);
    try {
      const before = await report();
      const attacker = new zmq.Push({ linger: 0 });
      let dropped = 0;
      void (async () => {
        for await (const e of attacker.events) if (e.type === 'disconnect') dropped++;
      })();
      attacker.connect(before.endpoint);
      const evil = { runId, rank: 0, session: 'evil' };
      const [delimiter, signature, header] = encode(key, evil, 'heartbeat', { step: 1 });
      await attacker.send([delimiter!, signature!, header!, Buffer.alloc(SIZE, 0x20)]);
      // Either the socket drops the sender (the cap), or the link takes the message in whole and
      // then counts it oversized (no cap): wait for whichever happens.
      await until(report, (r) => dropped > 0 || (r.rejected.oversized ?? 0) > 0, 'the oversized message to be refused');
      attacker.close();

      // The link still serves: a well-formed message from another peer is accepted.
      const rank = new zmq.Push({ linger: 0 });
      rank.connect(before.endpoint);
      await rank.send(encode(key, { runId, rank: 0, session: 'good' }, 'heartbeat', { step: 3 }));
      const last = await until(report, (r) => r.accepted >= 1, 'the good message to be accepted');
      rank.close();

      // Without the cap ZeroMQ allocates the whole SIZE-byte frame before the link sees it, so the
      // peak grows by at least SIZE. With it, libzmq reads the 9-byte frame header, sees a size
      // over CAP and drops the peer before allocating, so the peak grows only by what the
      // process allocates meanwhile (a few MiB). SIZE / 2 lies between the two.
      const growth = last.peak - Math.max(first.peak, before.peak);
      console.log(
        `oversized ${SIZE >> 20} MiB frame, cap ${CAP >> 20} MiB: rss ${(before.rss / 2 ** 20).toFixed(0)} → ${(last.rss / 2 ** 20).toFixed(0)} MiB, ` +
          `peak ${(before.peak / 2 ** 20).toFixed(0)} → ${(last.peak / 2 ** 20).toFixed(0)} MiB`,
      );
      expect(growth).toBeLessThan(SIZE / 2);
      expect(dropped).toBeGreaterThan(0);
      expect(last.rejected).toEqual({}); // nothing of it reached the link
      expect(last.accepted).toBe(1);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
