// The dashboard in headless Chromium (Debian's `chromium`, driven by playwright-core): a real
// service with a real run. The list page shows state, progress and last loss; the experiment's
// own URL (/ui/experiments/<id>) draws its live loss terms, and opened fresh after the run it
// shows every panel at once: curves, config, checkpoints with working download links,
// evaluations (accuracy, TAR@FAR table, ROC) and events. Screenshots of the curves and the ROC
// are checked pixel by pixel for the drawn lines.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../ts/config/load.ts';
import { Client } from '../../ts/sdk/client.ts';
import { buildApp } from '../../ts/service/app.ts';
import { EventBus } from '../../ts/service/bus.ts';
import { controllerLauncher } from '../../ts/service/controller-launcher.ts';
import { ArtifactStore, ServiceStore } from '../../ts/service/db.ts';
import { runPythonJson } from '../../ts/service/python-cli.ts';
import { DeviceScheduler } from '../../ts/service/scheduler.ts';
import { createService, type Service } from '../../ts/service/service.ts';
import { Supervisor } from '../../ts/service/supervisor.ts';
import { HAVE_PYTHON, pythonJson } from './helpers.ts';

const CHROMIUM = process.env.DMFR_CHROMIUM ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) console.warn(`dashboard test skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set DMFR_CHROMIUM)`);

const LINE_COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b']; // dashboard.html's palette

/**
 * Pixels of a PNG whose colour is one of `colors` (each channel within 8 of it: an opaque stroke
 * pixel the line covers fully is drawn in exactly its colour; 8 allows for colour management).
 */
function countLinePixels(png: Buffer, colors: string[], dir: string): number {
  const file = path.join(dir, `shot-${Date.now()}.png`);
  writeFileSync(file, png);
  return pythonJson<number>(`
import json, numpy as np
from PIL import Image
img = np.asarray(Image.open(${JSON.stringify(file)}).convert("RGB")).astype(int)
cols = [[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in ${JSON.stringify(colors)}]
hit = np.zeros(img.shape[:2], bool)
for c in cols:
    hit |= (np.abs(img - np.array(c)).max(axis=2) <= 8)
print(json.dumps(int(hit.sum())))`);
}

const isLossTerm = (n: string) => n === 'loss' || n.startsWith('L_') || n === 'KL';

describe.skipIf(!HAVE_CHROMIUM || !HAVE_PYTHON)('dashboard', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'dmfr-dash-'));
  let service: Service | undefined;
  let browser: Browser | undefined;
  afterAll(async () => {
    await browser?.close();
    await service?.close(5000);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('links to each experiment, draws its live loss terms, and opens fresh on every panel', async () => {
    service = await createService({ dataDir, cpuSlots: 2, logger: pino({ level: 'silent' }) });
    const url = (await service.app.listen({ host: '127.0.0.1', port: 0 })).replace(/\/$/, '');
    const client = new Client(url);
    const exp = await client.createExperiment({ preset: 'quick', steps: 60, method: 'filter', name: 'dash' });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const open = async (at: string): Promise<Page> => {
      const page = await browser!.newPage({ viewport: { width: 1280, height: 1600 } });
      await page.goto(url + at);
      return page;
    };

    // The list: a link per experiment to its own URL.
    const list = await open('/');
    const row = list.locator(`#experiments tr[data-id="${exp.id}"]`);
    await row.waitFor({ timeout: 10_000 });
    expect(await row.locator('a').getAttribute('href')).toBe(`/ui/experiments/${exp.id}`);

    // The experiment's URL while it trains: points arrive over SSE and the curves grow.
    const live = await open(`/ui/experiments/${exp.id}`);
    await live.waitForFunction(() => Number(document.querySelector('#curves')?.getAttribute('data-points')) > 20, undefined, { timeout: 300_000 });
    const lines = await live.locator('#curves polyline').evaluateAll((els) => els.map((e) => e.getAttribute('data-name')));
    expect(lines).toEqual(expect.arrayContaining(['loss', 'L_cls', 'L_flt']));
    await live.waitForFunction(() => document.querySelector('#state')?.textContent === 'COMPLETED', undefined, { timeout: 300_000 });
    await live.close();

    // The list (refreshed every 5 s) shows the final state, progress and last loss.
    const done = await client.getExperiment(exp.id);
    const summary = done.summary as { steps: number; final_loss: number };
    await list.waitForFunction((id) => document.querySelector(`#experiments tr[data-id="${id}"] .state`)?.textContent === 'COMPLETED', exp.id, { timeout: 15_000 });
    expect(await row.locator('.progress').getAttribute('data-done')).toBe(String(summary.steps));
    expect(await row.locator('.progress').getAttribute('data-total')).toBe('60');
    expect(await row.locator('.loss').textContent()).toBe(summary.final_loss.toFixed(4));

    // Evaluations as the service stores them (a verification and a template protocol).
    const artifacts = new ArtifactStore(service.store.db);
    const [ckpt] = await client.checkpoints(exp.id);
    expect(ckpt).toBeDefined();
    artifacts.createEvaluation({ id: 'eval-1', experimentId: exp.id, checkpointStep: ckpt!.step, protocol: 'verification', args: ['--bin', 'lfw.bin'] });
    artifacts.finishEvaluation('eval-1', { result: { accuracy: 0.95, std: 0.01 } });
    artifacts.createEvaluation({ id: 'eval-2', experimentId: exp.id, checkpointStep: ckpt!.step, protocol: 'templates', args: [] });
    artifacts.finishEvaluation('eval-2', {
      result: {
        tar_at_far: { threshold: { '1e-4': { tar: 0.2, far: 1e-4, too_few_impostors: true }, '1e-3': { tar: 0.5, far: 1e-3 }, '1e-2': { tar: 0.8, far: 1e-2 } } },
        roc: { far: [1e-4, 1e-3, 1e-2, 1e-1], tar: [0.2, 0.5, 0.8, 0.95] },
      },
    });

    // Opened fresh after the run: every panel is filled from the API, nothing waits for live events.
    const page = await open(`/ui/experiments/${exp.id}`);
    await page.waitForFunction(() => document.querySelector('#roc')?.getAttribute('data-curves') === '1', undefined, { timeout: 15_000 });
    const stored = await client.metrics(exp.id);
    const storedPoints = Object.entries(stored).filter(([n]) => isLossTerm(n.replace(/^terms\./, ''))).reduce((s, [, pts]) => s + pts.length, 0);
    expect(Number(await page.locator('#curves').getAttribute('data-points'))).toBe(storedPoints);
    expect(await page.locator('#state').textContent()).toBe('COMPLETED');
    expect(await page.locator('#progress .progress').getAttribute('data-done')).toBe(String(summary.steps));
    expect(JSON.parse((await page.locator('#config').textContent())!)).toEqual(done.config);

    const ckptLink = page.locator('#checkpoint-list a');
    expect(await page.locator('#checkpoint-list tbody tr td').first().textContent()).toBe(String(ckpt!.step));
    const download = await page.request.get(url + (await ckptLink.first().getAttribute('href'))!);
    expect(download.status()).toBe(200);
    expect((await download.body()).length).toBe(ckpt!.bytes);

    const evalRows = await page.locator('#evals tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    expect(evalRows[0]!.slice(0, 4)).toEqual(['verification', String(ckpt!.step), 'completed', 'accuracy 0.9500 ± 0.0100']);
    expect(evalRows[1]!.slice(0, 3)).toEqual(['templates', String(ckpt!.step), 'completed']);
    expect(await page.locator('#tar thead th').allTextContents()).toEqual(['evaluation', 'TAR@FAR=1e-4', 'TAR@FAR=1e-3', 'TAR@FAR=1e-2']);
    expect(await page.locator('#tar tbody td').allTextContents()).toEqual([`templates @ ${ckpt!.step}`, '0.2000*', '0.5000', '0.8000']);

    const events = await page.locator('#events tbody td:nth-child(2)').allTextContents();
    expect(events[0]).toBe('– → QUEUED');
    expect(events).toContain('STOPPING_COMPLETED → COMPLETED');
    expect(events.some((t) => t.startsWith(`checkpoint at step ${ckpt!.step}`))).toBe(true);

    // The screenshots show drawn lines. Each curve spans the plot's width, W − 2·pad = 720 − 72 =
    // 648 px (ROC: 480 − 72 = 408 px), and a 2 px stroke fully covers at least one pixel in every
    // column it crosses; 2 columns are allowed for the rounded ends.
    expect(countLinePixels(await page.locator('#curves').screenshot(), LINE_COLORS, dataDir)).toBeGreaterThanOrEqual(648 - 2);
    expect(countLinePixels(await page.locator('#roc').screenshot(), LINE_COLORS.slice(0, 1), dataDir)).toBeGreaterThanOrEqual(408 - 2);
    await page.screenshot({ path: process.env.DMFR_SCREENSHOT ?? path.join(dataDir, 'dashboard.png'), fullPage: true });
  }, 900_000);

  it('with a token: pages open through ?access_token, every link carries it, and live loss terms may be nested under `terms`', async () => {
    // The real app on its own store and bus; the experiment is written through the store, so no
    // ranks start, and its events go through the real store, bus and SSE route.
    const dir = mkdtempSync(path.join(tmpdir(), 'dmfr-dash-token-'));
    const silent = pino({ level: 'silent' });
    const store = new ServiceStore(path.join(dir, 'dmfr.sqlite'));
    const bus = new EventBus();
    const supervisor = new Supervisor(store, bus, new DeviceScheduler('cpu', 1), controllerLauncher(silent), dir, silent);
    const app = await buildApp({ context: { store, artifacts: new ArtifactStore(store.db), bus, supervisor, dataDir: dir, dataRoots: [dir], pythonJson: runPythonJson }, token: 'T0K' });
    const runDir = path.join(dir, 'experiments', 'tok-1');
    store.createExperiment({ id: 'tok-1', name: 'token', config: loadConfig({ preset: 'quick' }), priority: 0, nproc: 1, maxRestarts: 0, runDir, checkpointPolicy: null });
    try {
      const url = (await app.listen({ host: '127.0.0.1', port: 0 })).replace(/\/$/, '');
      browser ??= await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
      const page = await browser.newPage();
      expect((await page.goto(`${url}/ui/experiments/tok-1`))!.status()).toBe(401);

      await page.goto(`${url}/?access_token=T0K`);
      expect(await page.locator('#experiments tr[data-id="tok-1"] a').getAttribute('href')).toBe('/ui/experiments/tok-1?access_token=T0K');

      await page.goto(`${url}/ui/experiments/tok-1?access_token=T0K`);
      await page.waitForFunction(() => document.querySelector('#state')?.textContent === 'QUEUED', undefined, { timeout: 10_000 });
      expect(await page.locator('#home').getAttribute('href')).toBe('/?access_token=T0K');
      // Loss terms nested under `terms` (the run store's shape) and as top-level keys both draw.
      for (let step = 0; step < 5; step++) {
        bus.publish(store.appendEvent('tok-1', 'metrics', { step, loss: 2 - 0.1 * step, lr: 0.1, terms: { L_cls: 1.5 - 0.1 * step, L_flt: 0.5 } }));
      }
      bus.publish(store.appendEvent('tok-1', 'metrics', { step: 5, loss: 1.4, lr: 0.1, L_cls: 1.0, L_flt: 0.4 }));
      await page.waitForFunction(() => document.querySelector('#curves')?.getAttribute('data-points') === '18', undefined, { timeout: 10_000 });
      expect(await page.locator('#curves polyline').evaluateAll((els) => els.map((e) => e.getAttribute('data-name')))).toEqual(['loss', 'L_cls', 'L_flt']);
      expect(await page.locator('#legend').textContent()).toBe('loss 1.4000L_cls 1.0000L_flt 0.4000');

      // A checkpoint event refreshes the table; its download link carries the token.
      const file = path.join(runDir, 'checkpoints', 'step-00000005.pt');
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, Buffer.alloc(1234, 7));
      bus.publish(store.addCheckpoint('tok-1', { step: 5, path: file, bytes: 1234 }));
      const link = page.locator('#checkpoint-list a');
      await link.waitFor({ timeout: 10_000 });
      const href = (await link.getAttribute('href'))!;
      expect(href).toBe('/experiments/tok-1/checkpoints/5?access_token=T0K');
      const got = await page.request.get(url + href);
      expect(got.status()).toBe(200);
      expect((await got.body()).length).toBe(1234);
      expect(await page.locator('#events tbody td:nth-child(2)').allTextContents()).toEqual(['– → QUEUED', 'checkpoint at step 5 (1.2 KiB)']);

      await page.goto(`${url}/ui/experiments/nope-1?access_token=T0K`);
      await page.waitForFunction(() => document.querySelector('#title')?.textContent === 'Experiment not found', undefined, { timeout: 10_000 });
      await page.close();
    } finally {
      await app.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
