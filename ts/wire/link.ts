// The controller's end of the wire: binds the control ROUTER and the events PULL, decodes and
// checks every received message, counts and reports rejections (the sockets keep running), and
// sends through one queue per socket. RunController builds on it; tests drive it directly.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as zmq from 'zeromq';
import { decode, encode, type Identity, type Message } from './frame.ts';
import { RejectCounters, WireRejection, type RejectReason } from './reject.ts';
import { SendQueue } from './queue.ts';
import { DEFAULT_MAX_MESSAGE_BYTES, type Body, type Channel, type MsgType } from './schemas.ts';
import type { NamedBuffer } from './buffers.ts';

export interface LinkOptions {
  runId: string;
  key: Buffer;
  /** Address to bind (runtime.bind); ports are random. */
  bind: string;
  maxMessageBytes?: number;
  /** Extra checks on an authentic message (e.g. the sender is a rank of this run); throw WireRejection. */
  accept?: (msg: Message, identity: Buffer | null) => void;
  /** CURVE secret key (Z85): both sockets become CURVE servers and accept only encrypted peers. */
  curveSecretKey?: string;
}

export interface LinkEvents {
  message: [msg: Message, identity: Buffer | null, channel: Channel];
  rejected: [reason: RejectReason, detail: string, from: string];
  'send-error': [err: Error];
}

export class ControllerLink extends EventEmitter<LinkEvents> {
  readonly rejected = new RejectCounters();
  /** The controller's own session id, in the header of every message it sends. */
  readonly session: string;
  private readonly router: zmq.Router;
  private readonly pull: zmq.Pull;
  private readonly queue: SendQueue;
  private closed = false;

  constructor(private readonly opts: LinkOptions) {
    super();
    const curve = opts.curveSecretKey ? { curveServer: true, curveSecretKey: opts.curveSecretKey } : {};
    // ZMQ_MAXMSGSIZE at the protocol's limit: libzmq reads a frame's size from its header and drops
    // the peer before allocating a frame over it, so an oversized message is never buffered
    // (decode's total-size check still rejects a message of many smaller frames).
    const cap = { maxMessageSize: opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES };
    this.router = new zmq.Router({ linger: 0, mandatory: true, sendTimeout: 5000, ...cap, ...curve });
    this.pull = new zmq.Pull({ linger: 0, ...cap, ...curve });
    this.session = randomBytes(8).toString('hex');
    this.queue = new SendQueue(this.router, (e) => this.emit('send-error', e));
  }

  /** Binds both sockets and starts receiving; resolves with the endpoints the ranks connect to. */
  async bind(): Promise<{ control: string; events: string }> {
    await this.router.bind(`tcp://${this.opts.bind}:*`);
    await this.pull.bind(`tcp://${this.opts.bind}:*`);
    void this.receive(this.router, 'controlFromRank');
    void this.receive(this.pull, 'eventsFromRank');
    return this.endpoints;
  }

  get endpoints(): { control: string; events: string } {
    return { control: this.router.lastEndpoint!, events: this.pull.lastEndpoint! };
  }

  /** Queues one message to the rank whose DEALER has this routing identity. */
  send<T extends MsgType>(identity: Buffer, type: T, body: Omit<Body<T>, 'buffers'>, buffers: NamedBuffer[] = []): Promise<boolean> {
    const from: Identity = { runId: this.opts.runId, rank: null, session: this.session };
    return this.queue.send([identity, ...encode(this.opts.key, from, type, body, buffers)]);
  }

  get sendQueueSize(): number {
    return this.queue.size;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.close();
    this.router.close();
    this.pull.close();
  }

  private async receive(socket: zmq.Router | zmq.Pull, channel: Channel): Promise<void> {
    try {
      for await (const frames of socket) this.onFrames(frames, channel);
    } catch (e) {
      if (!this.closed) this.emit('send-error', e as Error);
    }
  }

  private onFrames(frames: Buffer[], channel: Channel): void {
    const identity = channel === 'controlFromRank' ? (frames[0] ?? Buffer.alloc(0)) : null;
    const rest = identity ? frames.slice(1) : frames;
    let msg: Message;
    try {
      msg = decode(rest, {
        key: this.opts.key,
        runId: this.opts.runId,
        channel,
        maxMessageBytes: this.opts.maxMessageBytes,
        identity: identity ?? undefined,
      });
      this.opts.accept?.(msg, identity);
    } catch (e) {
      if (!(e instanceof WireRejection)) throw e;
      this.rejected.add(e.reason);
      // Never the key; the identity is cut short (it is attacker-controlled).
      const from = identity ? JSON.stringify(identity.toString('utf8').slice(0, 80)) : channel;
      this.emit('rejected', e.reason, e.message, from);
      return;
    }
    this.emit('message', msg, identity, channel);
  }
}
