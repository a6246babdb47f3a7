import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DeviceScheduler, deviceEnv } from '../../ts/service/scheduler.ts';
import { STATES, canTransition, TERMINAL } from '../../ts/service/states.ts';

describe('DeviceScheduler', () => {
  it('places by priority then arrival and waits when a run does not fit', () => {
    const s = new DeviceScheduler('cuda', 4);
    s.enqueue('a', 3);
    s.enqueue('b', 2);
    s.enqueue('c', 1, 5);
    expect(s.schedule().map((p) => [p.runId, p.devices])).toEqual([
      ['c', [0]],
      ['a', [1, 2, 3]],
    ]);
    expect(s.position('b')).toBe(0);
    s.release('c');
    expect(s.schedule()).toEqual([]); // b needs 2, only 1 free
    s.release('a');
    const [b] = s.schedule();
    expect(b?.devices).toEqual([0, 1]);
    expect(deviceEnv(b!)).toEqual({ CUDA_VISIBLE_DEVICES: '0,1' });
  });

  it('cancels while queued and rejects impossible requests', () => {
    const s = new DeviceScheduler('cpu', 2);
    s.enqueue('x', 2);
    expect(s.dequeue('x')).toBe(true);
    expect(s.dequeue('x')).toBe(false);
    expect(() => s.enqueue('y', 3)).toThrow(/has 2/);
    expect(() => s.enqueue('y', 0)).toThrow(/positive integer/);
  });

  it('never double-books a device under any sequence of operations', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('enqueue' as const), run: fc.integer({ min: 0, max: 9 }), slots: fc.integer({ min: 1, max: 4 }), prio: fc.integer({ min: 0, max: 2 }) }),
      fc.record({ kind: fc.constant('release' as const), run: fc.integer({ min: 0, max: 9 }) }),
      fc.record({ kind: fc.constant('dequeue' as const), run: fc.integer({ min: 0, max: 9 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const s = new DeviceScheduler('cuda', 4);
        for (const o of ops) {
          try {
            if (o.kind === 'enqueue') s.enqueue(`r${o.run}`, o.slots, o.prio);
            else if (o.kind === 'release') s.release(`r${o.run}`);
            else s.dequeue(`r${o.run}`);
          } catch {
            // duplicate enqueue: rejected, state unchanged
          }
          s.schedule();
          const snap = s.snapshot();
          const held = Object.values(snap.held).flat();
          expect(new Set(held).size).toBe(held.length);
          expect(held.filter((d) => snap.free.includes(d))).toEqual([]);
          expect(held.length + snap.free.length).toBe(4);
        }
      }),
    );
  });
});

describe('experiment states', () => {
  it('terminal states have no way out and every state reaches a terminal one', () => {
    for (const t of TERMINAL) for (const s of STATES) expect(canTransition(t, s)).toBe(false);
    const reach = (from: string, seen = new Set<string>()): boolean => {
      if (TERMINAL.has(from as never)) return true;
      seen.add(from);
      return STATES.some((to) => canTransition(from as never, to) && !seen.has(to) && reach(to, seen));
    };
    for (const s of STATES) expect(reach(s)).toBe(true);
  });

  it('follows the Determined pause cycle', () => {
    expect(canTransition('RUNNING', 'PAUSING')).toBe(true);
    expect(canTransition('PAUSING', 'PAUSED')).toBe(true);
    expect(canTransition('PAUSED', 'RESUMING')).toBe(true);
    expect(canTransition('PAUSED', 'RUNNING')).toBe(false);
    expect(canTransition('QUEUED', 'RUNNING')).toBe(false);
  });
});
