// pythonia helpers: real Python process, real dataset files; lifecycle, errors and timeouts.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isAlive } from '../../ts/controller/processes.ts';
import { PythonHelpers } from '../../ts/pyhelpers.ts';
import { HAVE_PYTHON, waitFor } from './helpers.ts';

/** A 8×8 grey PGM whose pixels depend on `seed`. */
function pgm(seed: number): Buffer {
  const pixels = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 7 + seed * 31) % 256));
  return Buffer.concat([Buffer.from('P5\n8 8\n255\n'), pixels]);
}

describe.skipIf(!HAVE_PYTHON)('pythonia helpers', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'dmfr-py-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('inspects a dataset, surfaces Python errors, times out, and exits on dispose', async () => {
    for (const id of ['alice', 'bob']) {
      mkdirSync(path.join(root, id));
      for (const k of [1, 2, 3]) writeFileSync(path.join(root, id, `${k}.pgm`), pgm(k + id.length));
    }
    const py = await PythonHelpers.open({ timeoutMs: 20_000 });
    const pid = await py.pythonPid();
    expect(pid).toBe(py.pid);
    const report = await py.inspectDataset(root);
    expect(report).toMatchObject({ format: 'folder', images: 6, identities: 2 });

    await expect(py.inspectDataset(path.join(root, 'missing'))).rejects.toThrow(/inspect_dataset failed: .*missing/);
    expect(isAlive(pid)).toBe(true); // a Python error does not end the process

    py.dispose();
    await waitFor(() => !isAlive(pid), 10_000, 'the Python process to exit on dispose');
    await expect(py.inspectDataset(root)).rejects.toThrow(/disposed/);

    const slow = await PythonHelpers.open({ timeoutMs: 1500 });
    const slowPid = await slow.pythonPid();
    await expect(slow.sleep(30)).rejects.toThrow(/timed out after 1500 ms/);
    await waitFor(() => !isAlive(slowPid), 10_000, 'the Python process to stop after a timeout');
  });
});
