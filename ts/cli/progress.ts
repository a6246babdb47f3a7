// Progress of `dmfr run` on stderr, so a long run is never silent. On a terminal: a one-line bar
// (steps, rate, loss, ETA) redrawn in place. Elsewhere (CI logs, pipes, `--json`): plain lines at a
// bounded rate — each status change, the first step, then at most one every `everyS` seconds
// (10 s), every checkpoint, and a "still …" line when nothing else was said for `everyS` — so the
// log stays short and stdout (the `--json` summary) stays clean. The Python verbs do the same
// (python/dmfr/progress.py).
import type { MetricsEvent } from '../controller/index.ts';

export interface ProgressOptions {
  stream?: { write(text: string): unknown };
  /** Draw the in-place bar (a terminal) or print plain lines. Default: whether stderr is a TTY. */
  tty?: boolean;
  /** Plain mode: the most one progress line per this many seconds (checkpoints always print). */
  everyS?: number;
  /** Prefix of plain lines, e.g. `dmfr run <run id>`. */
  label?: string;
  now?: () => number;
}

export class Progress {
  private readonly stream: { write(text: string): unknown };
  private readonly tty: boolean;
  private readonly everyMs: number;
  private readonly label: string;
  private readonly now: () => number;
  private lastDraw = Number.NEGATIVE_INFINITY;
  /** When a plain line was last printed (of any kind). */
  private lastLine = Number.NEGATIVE_INFINITY;
  private firstStepAt: { step: number; at: number } | null = null;
  private latest: MetricsEvent | null = null;
  private statusText = '';
  private timer: NodeJS.Timeout | null = null;

  constructor(opts: ProgressOptions = {}) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = opts.tty ?? Boolean(process.stderr.isTTY);
    this.everyMs = (opts.everyS ?? 10) * 1000;
    this.label = opts.label ?? 'dmfr';
    this.now = opts.now ?? Date.now;
  }

  /** Plain mode: check every second whether `everyS` passed in silence (start-up, a slow step). */
  startTimer(): void {
    if (this.tty || this.timer) return;
    this.timer = setInterval(() => this.heartbeat(), 1000);
    this.timer.unref();
  }

  /** Says nothing unless `everyS` passed since the last line; then repeats where the run stands. */
  heartbeat(): void {
    if (this.tty || this.now() - this.lastLine < this.everyMs) return;
    if (this.latest) this.line(`still training: ${this.describe(this.latest)}`);
    else if (this.statusText) this.line(`still ${this.statusText}`);
  }

  status(text: string): void {
    this.statusText = text;
    if (this.tty) this.stream.write(`\r\x1b[2K${this.label}: ${text}`);
    else this.line(text);
  }

  update(m: MetricsEvent): void {
    const now = this.now();
    this.firstStepAt ??= { step: m.step, at: now };
    this.latest = m;
    const last = m.step >= m.total_steps;
    if (this.tty) {
      if (now - this.lastDraw < 100 && !last) return;
      this.lastDraw = now;
      const width = 30;
      const filled = Math.round((Math.min(m.step, m.total_steps) / m.total_steps) * width);
      const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
      this.stream.write(`\r\x1b[2K${bar} ${this.describe(m)}`);
      return;
    }
    if (now - this.lastDraw >= this.everyMs || last) {
      this.lastDraw = now;
      this.line(this.describe(m));
    }
  }

  /** A checkpoint is always worth a line (plain mode); on a terminal the bar goes on. */
  checkpoint(step: number, path: string): void {
    if (!this.tty) this.line(`checkpoint at step ${step}: ${path}`);
  }

  end(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.tty) this.stream.write(`\r\x1b[2K`);
  }

  private line(text: string): void {
    this.lastLine = this.now();
    this.stream.write(`${this.label}: ${text}\n`);
  }

  /** `step 50/200 (25%)  loss 3.9120  4.1 steps/s  ETA 36s` — steps completed (docs/protocol.md). */
  private describe(m: MetricsEvent): string {
    const span = this.firstStepAt ? (this.now() - this.firstStepAt.at) / 1000 : 0;
    const rate = span > 0 && this.firstStepAt ? (m.step - this.firstStepAt.step) / span : 0;
    const eta = rate > 0 ? fmt((m.total_steps - m.step) / rate) : '?';
    const loss = m.loss === null ? 'nan' : m.loss.toFixed(4);
    const pct = Math.floor((100 * m.step) / m.total_steps);
    return `step ${m.step}/${m.total_steps} (${pct}%)  loss ${loss}  ${rate.toFixed(1)} steps/s  ETA ${eta}`;
  }
}

function fmt(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.round(s % 60);
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  return m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}
