// One send queue per socket: zeromq.js 6 allows a single pending send per socket, so every
// send on a socket goes through this FIFO. A failed send is reported, never thrown at the caller
// who queued it later, so one unreachable peer cannot wedge the queue.
export interface Sendable {
  send(frames: Buffer[]): Promise<void>;
}

export class SendQueue {
  private tail: Promise<void> = Promise.resolve();
  private pending = 0;
  private closed = false;

  constructor(
    private readonly socket: Sendable,
    private readonly onError: (err: Error) => void,
  ) {}

  get size(): number {
    return this.pending;
  }

  /** Queues the frames; the promise settles once they were handed to ZeroMQ (or failed). */
  send(frames: Buffer[]): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    this.pending++;
    const done = this.tail.then(async () => {
      try {
        if (this.closed) return false;
        await this.socket.send(frames);
        return true;
      } catch (e) {
        this.onError(e as Error);
        return false;
      } finally {
        this.pending--;
      }
    });
    this.tail = done.then(() => undefined);
    return done;
  }

  /** Waits until everything queued so far was sent or failed. */
  drain(): Promise<void> {
    return this.tail;
  }

  close(): void {
    this.closed = true;
  }
}
