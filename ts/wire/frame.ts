// Framing and signing (docs/protocol.md, "Framing"): delimiter, HMAC-SHA256 signature,
// header, body, buffers. `decode` checks a received frame set in the order the spec lists and
// throws a WireRejection naming the reason; it never trusts a byte before the signature matched.
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { Value } from '@sinclair/typebox/value';
import { fromFrame, specOf, toFrame, type NamedBuffer, type TypedArray } from './buffers.ts';
import { WireRejection } from './reject.ts';
import {
  Bodies,
  BufferSpec,
  CHANNELS,
  DEFAULT_MAX_MESSAGE_BYTES,
  DELIMITER,
  Header,
  PROTOCOL_VERSION,
  type Body,
  type Channel,
  type MsgType,
} from './schemas.ts';

const DELIM = Buffer.from(DELIMITER, 'ascii');

export interface Identity {
  runId: string;
  rank: number | null;
  session: string;
}

export interface Message<T extends MsgType = MsgType> {
  header: Header & { msg_type: T };
  body: Body<T>;
  buffers: Record<string, TypedArray>;
}

export function sign(key: Buffer, frames: readonly Buffer[]): string {
  const h = createHmac('sha256', key);
  for (const f of frames) h.update(f);
  return h.digest('hex');
}

/** Builds the frames of one message (without the ROUTER's identity frame). */
export function encode<T extends MsgType>(
  key: Buffer,
  from: Identity,
  msgType: T,
  body: Omit<Body<T>, 'buffers'>,
  buffers: NamedBuffer[] = [],
): Buffer[] {
  const header: Header = {
    version: PROTOCOL_VERSION,
    msg_id: randomUUID().replaceAll('-', ''),
    msg_type: msgType,
    run_id: from.runId,
    rank: from.rank,
    session: from.session,
    date: new Date().toISOString(),
  };
  const fullBody = buffers.length > 0 ? { ...body, buffers: buffers.map(specOf) } : body;
  const payload = [
    Buffer.from(JSON.stringify(header), 'utf8'),
    Buffer.from(JSON.stringify(fullBody), 'utf8'),
    ...buffers.map((b) => toFrame(b.array)),
  ];
  return [DELIM, Buffer.from(sign(key, payload), 'ascii'), ...payload];
}

export interface DecodeOptions {
  key: Buffer;
  runId: string;
  channel: Channel;
  maxMessageBytes?: number;
  /** The ROUTER routing identity the message came with (control socket): checked against the header. */
  identity?: Buffer;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseObject(frame: Buffer, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(frame));
  } catch (e) {
    throw new WireRejection('malformed', `${what} is not UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new WireRejection('malformed', `${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function firstError(schema: Parameters<typeof Value.Errors>[0], value: unknown): string {
  const err = Value.Errors(schema, value).First();
  return err ? `${err.path || '/'}: ${err.message}` : 'invalid';
}

/** Checks and parses a received frame set; throws WireRejection when it must be rejected. */
export function decode(frames: readonly Buffer[], opts: DecodeOptions): Message {
  const max = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  let total = 0;
  for (const f of frames) total += f.length;
  if (total > max) throw new WireRejection('oversized', `${total} bytes > max_message_bytes ${max}`);
  if (frames.length < 4) throw new WireRejection('malformed', `${frames.length} frames, need at least 4`);
  const [delim, sig, headerFrame, bodyFrame, ...bufferFrames] = frames as [Buffer, Buffer, Buffer, Buffer, ...Buffer[]];
  if (!delim.equals(DELIM)) throw new WireRejection('malformed', 'frame 0 is not the delimiter');

  const expected = Buffer.from(sign(opts.key, frames.slice(2)), 'ascii');
  if (sig.length !== expected.length || !timingSafeEqual(sig, expected)) {
    throw new WireRejection('bad_signature', sig.length === 0 ? 'no signature' : 'signature does not match');
  }

  const header = parseObject(headerFrame, 'header');
  if (!Value.Check(Header, header)) throw new WireRejection('malformed', `header ${firstError(Header, header)}`);
  const major = header.version.split('.')[0];
  if (major !== PROTOCOL_VERSION.split('.')[0]) {
    throw new WireRejection('bad_version', `version ${header.version}, this side speaks ${PROTOCOL_VERSION}`);
  }
  const allowed: readonly string[] = CHANNELS[opts.channel];
  if (!allowed.includes(header.msg_type)) {
    throw new WireRejection('unknown_type', `msg_type ${JSON.stringify(header.msg_type)} not allowed on ${opts.channel}`);
  }
  if (header.run_id !== opts.runId) throw new WireRejection('wrong_run', `run_id ${header.run_id}`);
  if (opts.identity) checkRoutingIdentity(opts.identity, header as Header);

  const body = parseObject(bodyFrame, 'body');
  const buffers = decodeBuffers(body.buffers, bufferFrames);
  const schema = Bodies[header.msg_type as MsgType];
  if (!Value.Check(schema, body)) {
    throw new WireRejection('invalid_body', `${header.msg_type} body ${firstError(schema, body)}`);
  }
  checkBufferShapes(header.msg_type as MsgType, body, buffers);
  return { header: header as Message['header'], body: body as Body<MsgType>, buffers };
}

function decodeBuffers(specs: unknown, frames: Buffer[]): Record<string, TypedArray> {
  const list = specs ?? [];
  if (!Array.isArray(list)) throw new WireRejection('malformed', 'body.buffers is not a list');
  if (list.length !== frames.length) {
    throw new WireRejection('malformed', `${frames.length} buffer frames, body describes ${list.length}`);
  }
  const buffers: Record<string, TypedArray> = {};
  list.forEach((spec: unknown, i) => {
    if (!Value.Check(BufferSpec, spec)) throw new WireRejection('malformed', `body.buffers[${i}] ${firstError(BufferSpec, spec)}`);
    if (spec.name in buffers) throw new WireRejection('malformed', `body.buffers[${i}]: duplicate name ${spec.name}`);
    const array = fromFrame(spec, frames[i]!);
    if (typeof array === 'string') throw new WireRejection('malformed', array);
    buffers[spec.name] = array;
  });
  return buffers;
}

/** The buffers a type must carry (docs/protocol.md, `ready` and `plan`). */
function checkBufferShapes(type: MsgType, body: Record<string, unknown>, buffers: Record<string, TypedArray>): void {
  const need = (name: string, ctor: Function, length: number, required: boolean) => {
    const b = buffers[name];
    if (!b) {
      if (required) throw new WireRejection('invalid_body', `${type}: missing buffer ${name}`);
      return;
    }
    if (!(b instanceof ctor) || b.length !== length) {
      throw new WireRejection('invalid_body', `${type}: buffer ${name} must be ${ctor.name} of ${length} elements`);
    }
  };
  if (type === 'ready' && Object.keys(buffers).length > 0) {
    const n = body.num_samples as number;
    need('labels', Int32Array, n, true);
    need('domains', Int16Array, n, true);
    need('pair', Int32Array, n, true);
  } else if (type === 'plan') {
    const n = (body.num_steps as number) * (body.shard_size as number);
    need('indices', Int32Array, n, true);
    need('domains', Int16Array, n, true);
    need('pair', Int32Array, n, false);
  }
}

/** The routing identity a rank's DEALER sets: "<run_id>/<rank>/<session>". */
export function routingIdentity(id: Identity): string {
  return `${id.runId}/${id.rank}/${id.session}`;
}

/** Checks a control message's header against the ROUTER identity frame it came with. */
export function checkRoutingIdentity(identity: Buffer, header: Header): void {
  const want = `${header.run_id}/${header.rank}/${header.session}`;
  if (identity.toString('utf8') !== want) {
    throw new WireRejection('wrong_run', `header ${want} disagrees with routing identity ${JSON.stringify(identity.toString('utf8'))}`);
  }
}
