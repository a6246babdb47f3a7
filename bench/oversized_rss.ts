// Memory of a controller's receiving socket when a peer sends one message far over
// max_message_bytes (issue #12, item 3), side by side in one run: (a) a plain PULL without
// ZMQ_MAXMSGSIZE — what the link was before the cap, and what the controller's PULL then did — and
// (b) the ControllerLink, whose sockets cap frames at max_message_bytes. Each receiver runs in a
// process of its own (test/ts/fixtures/link-memory-child.ts), so its RSS and peak are its alone.
//
//   npx tsx bench/oversized_rss.ts [--mib 1024] [--cap-mib 64]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as zmq from 'zeromq';
import { REPO_ROOT } from '../ts/controller/launch.ts';
import { encode } from '../ts/wire/index.ts';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SIZE = arg('mib', 1024) * 2 ** 20;
const CAP = arg('cap-mib', 64) * 2 ** 20;
const key = randomBytes(32);
const MiB = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;

interface Report { endpoint: string; rss: number; peak: number; accepted: number; received: number; rejected: Record<string, number> }

async function measure(mode: 'raw' | 'link'): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test/ts/fixtures/link-memory-child.ts'), mode, String(CAP)], {
    env: { ...process.env, DMFR_TEST_KEY: key.toString('hex'), DMFR_TEST_RUN: 'r-bench' },
  });
  const pending: ((r: Report) => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => pending.shift()?.(JSON.parse(l) as Report));
  const next = () => new Promise<Report>((resolve) => pending.push(resolve));
  const report = () => {
    const r = next();
    child.stdin.write('r\n');
    return r;
  };
  const first = await next();
  const before = await report();
  const push = new zmq.Push({ linger: 0 });
  let dropped = 0;
  void (async () => {
    for await (const e of push.events) if (e.type === 'disconnect') dropped++;
  })();
  push.connect(first.endpoint);
  const [d, s, h] = encode(key, { runId: 'r-bench', rank: 0, session: 'evil' }, 'heartbeat', { step: 1 });
  const t0 = Date.now();
  await push.send([d!, s!, h!, Buffer.alloc(SIZE, 0x20)]);
  let r = await report();
  while (dropped === 0 && r.received === 0 && !r.rejected.oversized && Date.now() - t0 < 120_000) {
    await new Promise((res) => setTimeout(res, 100));
    r = await report();
  }
  push.close();
  await new Promise((res) => setTimeout(res, 1000));
  const after = await report();
  const outcome = dropped ? 'peer dropped at the socket' : r.received ? 'received whole' : JSON.stringify(r.rejected);
  console.log(
    `${mode === 'raw' ? 'PULL without cap ' : 'ControllerLink    '}: ${MiB(SIZE)} message, cap ${MiB(CAP)}: ${outcome}; ` +
      `rss ${MiB(before.rss)} → ${MiB(after.rss)}, peak ${MiB(before.peak)} → ${MiB(after.peak)}`,
  );
  child.kill('SIGKILL');
}

// The link first: a child's ru_maxrss starts from its parent's at fork (Linux), and this process
// holds the SIZE-byte buffer once it has sent it.
await measure('link');
await measure('raw');
