// runtime.curve: the ranks' traffic is CURVE-encrypted; a peer without the controller's public
// key cannot even complete the handshake, so its messages never reach the wire checks.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zmq from 'zeromq';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../ts/config/load.ts';
import { RunController, type MetricsEvent } from '../../ts/controller/index.ts';
import { HAVE_PYTHON } from './helpers.ts';

describe.skipIf(!HAVE_PYTHON)('CURVE encryption', () => {
  it('trains with encrypted sockets and never sees a plain peer', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'dmfr-curve-')), 'run');
    const config = loadConfig({ preset: 'quick', steps: 15, nproc: 2, sets: ['runtime.curve=true'] });
    const controller = new RunController({ config, outDir: out });
    let intruded: Promise<void> | null = null;
    controller.on('metrics', (m: MetricsEvent) => {
      if (m.step !== 3 || intruded) return;
      intruded = (async () => {
        const push = new zmq.Push({ linger: 0, sendTimeout: 500 });
        const dealer = new zmq.Dealer({ linger: 0, sendTimeout: 500, routingId: `${controller.runId}/0/x` });
        push.connect(controller.endpoints.events);
        dealer.connect(controller.endpoints.control);
        // Plain messages queue locally and never pass the CURVE handshake: the sends time out or sit.
        await Promise.allSettled([push.send(['<DMFR|MSG>', 'nope', '{}', '{}']), dealer.send(['<DMFR|MSG>', 'nope', '{}', '{}'])]);
        await new Promise((r) => setTimeout(r, 500));
        push.close();
        dealer.close();
      })();
    });
    const summary = await controller.start();
    await intruded;
    expect(summary.status, summary.cause ?? '').toBe('completed');
    expect(summary.steps).toBe(15);
    expect(intruded).not.toBeNull();
    expect(summary.wire_rejected).toEqual({}); // nothing from the plain peer reached the checks
  });
});
