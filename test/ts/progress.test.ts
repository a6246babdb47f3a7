// The progress output of `dmfr run` away from a terminal: plain lines at a bounded rate, every
// checkpoint, and a "still …" line after a silence. A controllable clock makes the rate exact.
import { describe, expect, it } from 'vitest';
import { Progress } from '../../ts/cli/progress.ts';
import type { MetricsEvent } from '../../ts/controller/index.ts';

const metrics = (step: number): MetricsEvent => ({
  step,
  total_steps: 100,
  loss: 4 - step / 100,
  lr: 0.1,
  samples_per_s: 100,
  plan_wait_s: 0,
  step_time_s: 0.01,
  terms: { L_cls: 4 },
});

function plain(everyS = 10) {
  const lines: string[] = [];
  let t = 0;
  const p = new Progress({ tty: false, everyS, label: 'dmfr run r1', now: () => t, stream: { write: (s: string) => lines.push(s) } });
  return { p, lines, at: (ms: number) => (t = ms) };
}

describe('Progress (plain lines)', () => {
  it('prints the first step, then at most one line per everyS, and the last step', () => {
    const { p, lines, at } = plain(10);
    p.status('starting 2 rank(s)…');
    for (let step = 1; step <= 100; step++) {
      at(step * 250); // one step per 250 ms: 25 s in all
      p.update(metrics(step));
    }
    expect(lines[0]).toBe('dmfr run r1: starting 2 rank(s)…\n');
    const steps = lines.slice(1).map((l) => Number(/step (\d+)\/100/.exec(l)![1]));
    // at 250 ms (step 1), then the first step ≥ 10 s later (step 41 at 10.25 s), step 81 at
    // 20.25 s, and the final step 100
    expect(steps).toEqual([1, 41, 81, 100]);
    expect(lines.every((l) => l.endsWith('\n') && !l.includes('\r'))).toBe(true);
    // rate over the steps seen: (41 − 1) steps in 10 s = 4.0 steps/s; ETA (100 − 41) / 4 = 14.75 s → 15s
    expect(lines[2]).toBe('dmfr run r1: step 41/100 (41%)  loss 3.5900  4.0 steps/s  ETA 15s\n');
  });

  it('prints every checkpoint whatever the rate, and says "still" after a silence', () => {
    const { p, lines, at } = plain(10);
    p.status('starting 2 rank(s)…');
    at(9_999);
    p.heartbeat();
    expect(lines).toHaveLength(1); // 10 s have not passed
    at(10_000);
    p.heartbeat();
    expect(lines[1]).toBe('dmfr run r1: still starting 2 rank(s)…\n');
    at(10_500);
    p.update(metrics(1));
    p.checkpoint(1, '/r/checkpoints/step-00000001.pt');
    at(10_600);
    p.update(metrics(2)); // within 10 s of the last step line: quiet
    p.checkpoint(2, '/r/checkpoints/step-00000002.pt');
    expect(lines.slice(2)).toEqual([
      expect.stringMatching(/^dmfr run r1: step 1\/100 /),
      'dmfr run r1: checkpoint at step 1: /r/checkpoints/step-00000001.pt\n',
      'dmfr run r1: checkpoint at step 2: /r/checkpoints/step-00000002.pt\n',
    ]);
    at(20_599);
    p.heartbeat();
    expect(lines).toHaveLength(5);
    at(20_600);
    p.heartbeat();
    expect(lines[5]).toMatch(/^dmfr run r1: still training: step 2\/100 /);
  });

  it('on a terminal redraws one line in place and prints no checkpoint lines', () => {
    const out: string[] = [];
    let t = 0;
    const p = new Progress({ tty: true, now: () => t, stream: { write: (s: string) => out.push(s) } });
    p.update(metrics(1));
    t = 50;
    p.update(metrics(2)); // within 100 ms of the last draw
    p.checkpoint(2, '/x.pt');
    t = 200;
    p.update(metrics(3));
    p.end();
    expect(out).toHaveLength(3);
    expect(out.slice(0, 2).every((s) => s.startsWith('\r\x1b[2K') && !s.includes('\n'))).toBe(true);
    expect(out[1]).toMatch(/step 3\/100/);
  });
});
