// A typed client of the dmfr HTTP API. Its types come from the same TypeBox schemas the server
// validates with (ts/service/schemas.ts), so a field renamed on one side fails to compile here.
import type { Static } from '@sinclair/typebox';
import type { JoinInfo } from '../controller/nodes.ts';
import { TERMINAL, type State } from '../service/states.ts';
import type { Checkpoint, CheckpointPolicy, CreateDataset, CreateEvaluation, CreateExperiment, Dataset, Evaluation, Experiment, MetricSeries, Study, StudyCell } from '../service/schemas.ts';

export type ExperimentInfo = Static<typeof Experiment>;
export type CreateExperimentBody = Static<typeof CreateExperiment>;
export type EvaluationInfo = Static<typeof Evaluation>;
export type CheckpointInfo = Static<typeof Checkpoint>;
export type DatasetInfo = Static<typeof Dataset>;
export type StudyInfo = Static<typeof Study>;
export type StudyCellInfo = Static<typeof StudyCell>;

/** A study spec as `dmfr study run` reads it from YAML (docs/studies.md, "The spec"); the service
 *  validates it with the same code and names the key path of every problem (400 invalid_config). */
export interface StudySpecBody {
  name: string;
  base?: Record<string, unknown>;
  arms: Array<{ name: string } & Record<string, unknown>>;
  seeds?: number[];
  factors?: Record<string, unknown[]>;
  baseline?: string;
  pretrain?: Record<string, unknown>;
  eval?: { protocols?: string[]; fars?: number[]; verification?: unknown[]; templates?: unknown[]; similarity?: boolean };
}

/** One live event of an experiment (SSE): a state transition, a step's metrics or a checkpoint. */
export interface LiveEvent {
  id: number;
  kind: 'state' | 'metrics' | 'checkpoint' | 'log';
  data: Record<string, unknown>;
}

export class ApiRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: unknown,
  ) {
    super(`${status} ${code}: ${message}`);
  }
}

export interface ClientOptions {
  token?: string;
  fetch?: typeof fetch;
}

export class Client {
  private readonly base: string;

  constructor(
    baseUrl: string,
    private readonly opts: ClientOptions = {},
  ) {
    this.base = baseUrl.replace(/\/+$/, '');
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.opts.token ? { authorization: `Bearer ${this.opts.token}` } : {}), ...extra };
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await (this.opts.fetch ?? fetch)(this.base + path, {
      method,
      headers: this.headers(body === undefined ? {} : { 'content-type': 'application/json' }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    const parsed = text ? JSON.parse(text) : undefined;
    if (!res.ok) throw new ApiRequestError(res.status, parsed?.code ?? 'error', parsed?.message ?? text, parsed);
    return parsed as T;
  }

  createExperiment(body: CreateExperimentBody): Promise<ExperimentInfo> {
    return this.request('POST', '/experiments', body);
  }

  listExperiments(q: { state?: string; name?: string; limit?: number; offset?: number } = {}): Promise<{ items: ExperimentInfo[]; total: number }> {
    const qs = new URLSearchParams(Object.entries(q).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
    return this.request('GET', `/experiments${qs.size ? `?${qs}` : ''}`);
  }

  getExperiment(id: string): Promise<ExperimentInfo> {
    return this.request('GET', `/experiments/${encodeURIComponent(id)}`);
  }

  deleteExperiment(id: string): Promise<void> {
    return this.request('DELETE', `/experiments/${encodeURIComponent(id)}`);
  }

  stop(id: string): Promise<ExperimentInfo> {
    return this.request('POST', `/experiments/${encodeURIComponent(id)}/stop`);
  }

  pause(id: string): Promise<ExperimentInfo> {
    return this.request('POST', `/experiments/${encodeURIComponent(id)}/pause`);
  }

  resume(id: string): Promise<ExperimentInfo> {
    return this.request('POST', `/experiments/${encodeURIComponent(id)}/resume`);
  }

  restart(id: string): Promise<ExperimentInfo> {
    return this.request('POST', `/experiments/${encodeURIComponent(id)}/restart`);
  }

  /** A multi-node experiment's live attempt: what another host needs to join it (409 otherwise). */
  joinInfo(id: string): Promise<JoinInfo> {
    return this.request('GET', `/experiments/${encodeURIComponent(id)}/join`);
  }

  metrics(id: string, q: { names?: string[]; from?: number; to?: number } = {}): Promise<Static<typeof MetricSeries>> {
    const qs = new URLSearchParams();
    if (q.names) qs.set('names', q.names.join(','));
    if (q.from !== undefined) qs.set('from', String(q.from));
    if (q.to !== undefined) qs.set('to', String(q.to));
    return this.request('GET', `/experiments/${encodeURIComponent(id)}/metrics${qs.size ? `?${qs}` : ''}`);
  }

  checkpoints(id: string): Promise<CheckpointInfo[]> {
    return this.request('GET', `/experiments/${encodeURIComponent(id)}/checkpoints`);
  }

  setCheckpointPolicy(id: string, policy: Static<typeof CheckpointPolicy>): Promise<Static<typeof CheckpointPolicy>> {
    return this.request('PUT', `/experiments/${encodeURIComponent(id)}/checkpoint-policy`, policy);
  }

  evaluate(id: string, body: Static<typeof CreateEvaluation>): Promise<EvaluationInfo> {
    return this.request('POST', `/experiments/${encodeURIComponent(id)}/evaluations`, body);
  }

  evaluations(id: string): Promise<EvaluationInfo[]> {
    return this.request('GET', `/experiments/${encodeURIComponent(id)}/evaluations`);
  }

  registerDataset(body: Static<typeof CreateDataset>): Promise<DatasetInfo> {
    return this.request('POST', '/datasets', body);
  }

  /** Submits a study: its cells become queued experiments. `baseDir`: where the spec's relative
   *  files are taken from on the service host (inside a data root). */
  createStudy(spec: StudySpecBody, opts: { baseDir?: string } = {}): Promise<StudyInfo> {
    return this.request('POST', '/studies', { ...spec, ...(opts.baseDir === undefined ? {} : { base_dir: opts.baseDir }) });
  }

  /** A study: its state, every cell (state, experiment, cause), counts, and report.json once written. */
  getStudy(id: string): Promise<StudyInfo> {
    return this.request('GET', `/studies/${encodeURIComponent(id)}`);
  }

  /** Studies, newest first (without their reports). */
  listStudies(q: { state?: 'running' | 'completed' | 'failed' | 'canceled'; limit?: number; offset?: number } = {}): Promise<{ items: StudyInfo[]; total: number }> {
    const qs = new URLSearchParams(Object.entries(q).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
    return this.request('GET', `/studies${qs.size ? `?${qs}` : ''}`);
  }

  /** Ends a running study: its running experiments stop with a checkpoint. */
  cancelStudy(id: string): Promise<StudyInfo> {
    return this.request('POST', `/studies/${encodeURIComponent(id)}/cancel`);
  }

  /**
   * Live events of an experiment, replayed from `afterEventId` (0: from the start). Reconnects
   * with Last-Event-ID when the connection drops (up to `retries` times in a row, 1 s apart);
   * ends after the experiment's terminal state.
   */
  async *events(id: string, opts: { afterEventId?: number; signal?: AbortSignal; retries?: number } = {}): AsyncGenerator<LiveEvent> {
    let last = opts.afterEventId ?? 0;
    let failures = 0;
    for (;;) {
      let res: Response;
      try {
        res = await (this.opts.fetch ?? fetch)(`${this.base}/experiments/${encodeURIComponent(id)}/metrics`, {
          headers: this.headers({ accept: 'text/event-stream', 'last-event-id': String(last) }),
          signal: opts.signal,
        });
      } catch (err) {
        if (++failures > (opts.retries ?? 5) || (err as Error).name === 'AbortError') throw err;
        await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      if (res.status === 204) return;
      if (!res.ok || !res.body) {
        const body = await res.json().catch(() => ({}));
        throw new ApiRequestError(res.status, body.code ?? 'error', body.message ?? res.statusText, body);
      }
      let buffer = '';
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buffer += decoder.decode(chunk, { stream: true });
          for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
            const event = parseSse(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (!event) continue;
            last = event.id;
            failures = 0;
            yield event;
            if (event.kind === 'state' && TERMINAL.has(event.data.to as State)) return;
          }
        }
      } catch (err) {
        // The connection dropped mid-stream: reconnect from the last event seen.
        if (++failures > (opts.retries ?? 5) || (err as Error).name === 'AbortError') throw err;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }
}

function parseSse(block: string): LiveEvent | null {
  let id: number | null = null;
  let kind = 'message';
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'id') id = Number(value);
    else if (field === 'event') kind = value;
    else if (field === 'data') data.push(value);
  }
  if (id === null || data.length === 0) return null;
  return { id, kind: kind as LiveEvent['kind'], data: JSON.parse(data.join('\n')) };
}
