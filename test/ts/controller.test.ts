// Pure parts of the controller: failure causes from torchrun's output, rates, the Python log level.
import { describe, expect, it } from 'vitest';
import { pythonLogLevel, rootCauseLine, torchrunRootCause } from '../../ts/controller/launch.ts';
import { RateMeter } from '../../ts/controller/summary.ts';

// The tail of a real torchrun failure (torch 2.13), as it lands in <run_dir>/ranks.log.
const TORCHRUN_TAIL = `Traceback (most recent call last):
  File "/work/main/python/dmfr/worker.py", line 274, in main
    raise ValueError("Unknown level: %r" % level)
ValueError: Unknown level: 'info'
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
dmfr.worker FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-28_13:20:49
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 18845)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 18845
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-28_13:20:49
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 18844)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 18844
============================================================`.split('\n');

describe('failure causes from torchrun output', () => {
  it("names the root-cause rank, its pid and signal", () => {
    expect(torchrunRootCause(TORCHRUN_TAIL)).toBe('rank 1 (pid 18844) exitcode -9: Signal 9 (SIGKILL) received by PID 18844');
    expect(torchrunRootCause(['nothing to see'])).toBeNull();
  });

  it('finds the first Python exception, not torchrun’s ChildFailedError', () => {
    expect(rootCauseLine(TORCHRUN_TAIL)).toBe("ValueError: Unknown level: 'info'");
    expect(rootCauseLine(['RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB'])).toMatch(/^RuntimeError: CUDA out of memory/);
    expect(rootCauseLine(['all fine'])).toBeNull();
  });
});

describe('pythonLogLevel', () => {
  it("maps pino's level names to Python logging's", () => {
    expect(pythonLogLevel('info')).toBe('INFO');
    expect(pythonLogLevel('warn')).toBe('WARNING');
    expect(pythonLogLevel('trace')).toBe('DEBUG');
    expect(pythonLogLevel('silent')).toBe('CRITICAL');
    expect(pythonLogLevel('nonsense')).toBe('INFO');
  });
});

describe('RateMeter', () => {
  it('rates from the second message on, plan wait over compute', () => {
    const m = new RateMeter();
    expect(m.stepsPerS).toBeNull();
    m.add(0, 1000, 5, 0.5); // start-up: its wait and time are not counted
    m.add(1, 1100, 0.001, 0.1);
    m.add(3, 1300, 0.002, 0.1); // log_every 2: one message covers two steps
    expect(m.stepsPerS).toBeCloseTo(3 / 0.3, 9);
    expect(m.planWaitFraction).toBeCloseTo(0.003 / 0.3, 9);
  });
});
