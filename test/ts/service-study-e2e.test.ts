// A study through the service end to end: a real service on loopback (real SQLite, real ranks,
// real Python evaluation and report), the tiny spec (2 arms × 2 seeds, 4 steps, one rank per cell)
// submitted through the SDK. The service is closed mid-study and started again on the same data
// directory (with a token this time): the study resumes from its store, no cell is trained twice,
// no evaluated cell is evaluated again. Then `dmfr study run SPEC --server URL --json` submits the
// same spec: every cell is reused (nothing trains), and its last line is the local run's. The
// dashboard's study page shows the cells and the report (headless Chromium, when there is one).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { chromium } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../ts/controller/launch.ts';
import { Client, type StudyInfo } from '../../ts/sdk/client.ts';
import { createService, type Service } from '../../ts/service/service.ts';
import { HAVE_PYTHON, TINY_STUDY } from './helpers.ts';

const SPEC = TINY_STUDY;
const SPEC_YAML = JSON.stringify(TINY_STUDY); // JSON is YAML: `dmfr study run` reads it as the same spec

const silent = pino({ level: 'silent' });
const CHROMIUM = process.env.DMFR_CHROMIUM ?? '/usr/bin/chromium';

async function until(client: () => Client, id: string, done: (s: StudyInfo) => boolean, ms: number): Promise<StudyInfo> {
  const t0 = Date.now();
  for (;;) {
    const s = await client().getStudy(id);
    if (done(s)) return s;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms; study ${JSON.stringify({ state: s.state, cells: s.cells.map((c) => [c.arm, c.seed, c.state, c.cause]) })}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe.skipIf(!HAVE_PYTHON)('studies through the service', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'dmfr-study-svc-'));
  let service: Service | undefined;
  afterAll(async () => {
    await service?.close(5000);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('queues, evaluates and reports the tiny study, resumes it after a restart, and `study run --server` reuses its cells', async () => {
    service = await createService({ dataDir, cpuSlots: 2, logger: silent });
    let client = new Client((await service.app.listen({ host: '127.0.0.1', port: 0 })).replace(/\/$/, ''));
    const created = await client.createStudy(SPEC);
    expect(created).toMatchObject({ state: 'running', counts: { cells: 4, completed: 0, failed: 0 } });

    // 1. Close the service once a cell is evaluated and another is not; start it again (same data).
    const mid = await until(() => client, created.id, (s) => s.state !== 'running' || s.cells.some((c) => c.state === 'evaluated'), 30 * 60_000);
    expect(mid.state, 'the study ended before the restart could be tested').toBe('running');
    expect(mid.cells.some((c) => c.state !== 'evaluated')).toBe(true);
    const evaluated = mid.cells.filter((c) => c.state === 'evaluated');
    const mtimes = new Map(evaluated.map((c) => [c.hash, statSync(path.join(mid.dir, 'cells', c.hash, 'eval', 'metrics.json')).mtimeMs]));
    await service.close(30_000);
    service = await createService({ dataDir, cpuSlots: 2, logger: silent, token: 'study-token' });
    const url = (await service.app.listen({ host: '127.0.0.1', port: 0 })).replace(/\/$/, '');
    client = new Client(url, { token: 'study-token' });

    const end = await until(() => client, created.id, (s) => s.state !== 'running', 40 * 60_000);
    expect(end, JSON.stringify(end.cells)).toMatchObject({ state: 'completed', cause: null, counts: { cells: 4, completed: 4, failed: 0 } });
    // One experiment per cell, each completed: nothing trained twice across the restart.
    for (const c of end.cells) {
      expect(c.experiments, `${c.arm} seed ${c.seed}`).toHaveLength(1);
      expect((await client.getExperiment(c.experiment_id!)).state).toBe('COMPLETED');
    }
    expect((await client.listExperiments()).total).toBe(4);
    for (const [hash, mtime] of mtimes) expect(statSync(path.join(end.dir, 'cells', hash, 'eval', 'metrics.json')).mtimeMs).toBe(mtime);
    // The report: in GET /studies/{id} and on disk, following the contract.
    expect(end.report_path).toBe(path.join(end.dir, 'report.json'));
    const report = JSON.parse(readFileSync(end.report_path!, 'utf8'));
    expect(end.report).toEqual(report);
    expect(report.arms.map((a: { name: string; n: number }) => [a.name, a.n])).toEqual([['mix', 2], ['filter', 2]]);
    expect(Object.keys(report.arms[0].metrics['general/tar_at_far_1e-2']).sort()).toEqual(['ci95', 'mean', 'n', 'sd', 'values']);
    const comp = report.comparisons.find((c: { metric: string }) => c.metric === 'general/tar_at_far_1e-2');
    expect(comp).toMatchObject({ arm: 'filter', baseline: 'mix' });
    expect(Object.keys(comp)).toEqual(expect.arrayContaining(['diff', 'ci95', 'p', 'p_holm']));
    expect((await client.listStudies()).items.map((s) => [s.id, s.state])).toEqual([[created.id, 'completed']]);

    // 2. The CLI: the same spec, through the service (token from --token-file); every cell is
    //    reused, so nothing trains, and the last line is the local run's.
    const dir = mkdtempSync(path.join(tmpdir(), 'dmfr-study-cli-'));
    writeFileSync(path.join(dir, 'tiny.yaml'), SPEC_YAML);
    writeFileSync(path.join(dir, 'token'), 'study-token\n');
    const cli = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const p = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'dmfr.js'), 'study', 'run', path.join(dir, 'tiny.yaml'), '--server', url, '--token-file', path.join(dir, 'token'), '--json'], {
        env: { ...process.env, DMFR_STUDY_POLL_MS: '300', DMFR_TOKEN: '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      p.once('exit', (code) => resolve({ code, out, err }));
    });
    expect(cli.code, cli.err).toBe(0);
    const second = (await client.listStudies()).items.find((s) => s.id !== created.id)!;
    expect(JSON.parse(cli.out.trim().split('\n').at(-1)!)).toEqual({ status: 'completed', cells: 4, completed: 4, failed: 0, report: path.join(second.dir, 'report.json') });
    expect(cli.err).toContain(`study tiny: 4 cells on ${url} (study ${second.id}`);
    expect(cli.err).toMatch(/mix \{\} seed 0 \(\w+\): evaluated/);
    expect(cli.err).not.toMatch(/: training/);
    expect((await client.listExperiments()).total).toBe(4);
    // Its directory reads like a local study's: `dmfr study status DIR`.
    const status = await new Promise<string>((resolve) => {
      const p = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'dmfr.js'), 'study', 'status', second.dir], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      p.once('exit', () => resolve(out));
    });
    expect(status).toContain('4/4 evaluated, 0 failed');

    // 3. The dashboard (headless Chromium, when there is one): the study on the index, linking to
    //    its page, which shows every cell and the report's tables.
    if (!existsSync(CHROMIUM)) return void console.warn(`study dashboard check skipped: no Chromium at ${CHROMIUM}`);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
    try {
      const page = await browser.newPage();
      await page.goto(`${url}/?access_token=study-token`);
      const row = page.locator(`#studies tr[data-id="${created.id}"]`);
      await row.waitFor({ timeout: 20_000 });
      expect(await row.locator('a').getAttribute('href')).toBe(`/ui/studies/${created.id}?access_token=study-token`);
      await page.goto(`${url}/ui/studies/${created.id}?access_token=study-token`);
      await page.locator('#report-arms').waitFor({ timeout: 20_000 });
      expect(await page.locator('#state').textContent()).toBe('completed');
      expect(await page.locator('#cells tbody tr td:nth-child(5)').allTextContents()).toEqual(['evaluated', 'evaluated', 'evaluated', 'evaluated']);
      const links = await page.locator('#cells tbody tr td:nth-child(6) a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
      expect(links).toEqual(end.cells.map((c) => `/ui/experiments/${c.experiment_id}?access_token=study-token`));
      expect(await page.locator('#report-arms tbody tr td:first-child').allTextContents()).toEqual(['mix', 'filter']);
      expect(await page.locator('#report-arms thead th').allTextContents()).toEqual(['arm', 'n', 'general/tar_at_far_1e-2']);
      expect(await page.locator('#comparisons tbody tr td:first-child').allTextContents()).toContain('filter');
    } finally {
      await browser.close();
    }
  }, 80 * 60_000);
});
