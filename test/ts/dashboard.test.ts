// The dashboard in headless Chromium (Debian's `chromium`, driven by playwright-core): a real
// service with a real run; the page lists the experiment and draws its live loss curve.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { chromium } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { Client } from '../../ts/sdk/client.ts';
import { ArtifactStore } from '../../ts/service/db.ts';
import { createService, type Service } from '../../ts/service/service.ts';
import { HAVE_PYTHON } from './helpers.ts';

const CHROMIUM = process.env.DMFR_CHROMIUM ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) console.warn(`dashboard test skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set DMFR_CHROMIUM)`);

describe.skipIf(!HAVE_CHROMIUM || !HAVE_PYTHON)('dashboard', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'dmfr-dash-'));
  let service: Service | undefined;
  afterAll(async () => {
    await service?.close(5000);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('shows experiments and draws live loss curves', async () => {
    service = await createService({ dataDir, cpuSlots: 2, logger: pino({ level: 'silent' }) });
    const url = await service.app.listen({ host: '127.0.0.1', port: 0 });
    const client = new Client(url);
    const exp = await client.createExperiment({ preset: 'quick', steps: 60, method: 'filter', name: 'dash' });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage();
      await page.goto(url);
      await page.locator(`#list div[data-id="${exp.id}"]`).click();
      // Points arrive over SSE while the run trains; the curve grows.
      await page.waitForFunction(() => Number(document.querySelector('#curves')?.getAttribute('data-points')) > 20, undefined, { timeout: 90_000 });
      const lines = await page.locator('#curves polyline').evaluateAll((els) => els.map((e) => e.getAttribute('data-name')));
      expect(lines).toEqual(expect.arrayContaining(['loss', 'L_cls', 'L_flt']));
      await page.waitForFunction(() => /COMPLETED/.test(document.querySelector('#title')?.textContent ?? ''), undefined, { timeout: 90_000 });
      expect(await page.locator(`#list div[data-id="${exp.id}"] .state`).textContent()).toBe('COMPLETED');
      // A stored template evaluation with its ROC is drawn as a curve.
      const artifacts = new ArtifactStore(service.store.db);
      const ev = artifacts.createEvaluation({ id: 'eval-1', experimentId: exp.id, checkpointStep: 59, protocol: 'templates', args: [] });
      artifacts.finishEvaluation(ev.id, { result: { roc: { far: [1e-4, 1e-3, 1e-2, 1e-1], tar: [0.2, 0.5, 0.8, 0.95] } } });
      await page.locator(`#list div[data-id="${exp.id}"]`).click();
      await page.waitForFunction(() => document.querySelector('#roc')?.getAttribute('data-curves') === '1', undefined, { timeout: 10_000 });
      expect(await page.locator('#roc polyline').count()).toBe(1);
      expect(await page.locator('#evals tbody tr td').first().textContent()).toBe('templates');
      await page.screenshot({ path: process.env.DMFR_SCREENSHOT ?? path.join(dataDir, 'dashboard.png') });
    } finally {
      await browser.close();
    }
  });
});
