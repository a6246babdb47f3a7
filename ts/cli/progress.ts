// A one-line progress bar on stderr: step, loss, rate and ETA. Only drawn when stderr is a TTY,
// so logs and `--json` output stay clean when redirected.
import type { MetricsEvent } from '../controller/index.ts';

export class ProgressBar {
  private readonly started = Date.now();
  private lastDraw = 0;
  private firstStepAt: { step: number; at: number } | null = null;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly enabled = Boolean(process.stderr.isTTY),
  ) {}

  status(text: string): void {
    if (!this.enabled) return;
    this.stream.write(`\r\x1b[2K${text}`);
  }

  update(m: MetricsEvent): void {
    if (!this.enabled) return;
    const now = Date.now();
    this.firstStepAt ??= { step: m.step, at: now };
    const done = m.step; // steps completed (docs/protocol.md)
    if (now - this.lastDraw < 100 && done < m.total_steps) return;
    this.lastDraw = now;
    const width = 30;
    const filled = Math.round((done / m.total_steps) * width);
    const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
    const span = (now - this.firstStepAt.at) / 1000;
    const rate = span > 0 ? (m.step - this.firstStepAt.step) / span : 0;
    const eta = rate > 0 ? fmt((m.total_steps - done) / rate) : '?';
    const loss = m.loss === null ? 'nan' : m.loss.toFixed(4);
    this.stream.write(`\r\x1b[2K${bar} step ${done}/${m.total_steps}  loss ${loss}  ${rate.toFixed(1)} it/s  ETA ${eta}`);
  }

  end(): void {
    if (this.enabled) this.stream.write(`\r\x1b[2K`);
  }

  get elapsed(): string {
    return fmt((Date.now() - this.started) / 1000);
  }
}

function fmt(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  const sec = Math.round(s % 60);
  return m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}
