// Typed binary buffers carried after the body frame: little-endian, C order (docs/protocol.md).
import type { BufferSpec, DType } from './schemas.ts';

export type TypedArray =
  | Uint8Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Float32Array
  | Float64Array;

const CTORS = {
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  float32: Float32Array,
  float64: Float64Array,
} as const;

export interface NamedBuffer {
  name: string;
  shape: number[];
  array: TypedArray;
}

export function dtypeOf(array: TypedArray): DType {
  for (const [dtype, ctor] of Object.entries(CTORS)) if (array instanceof ctor) return dtype as DType;
  throw new TypeError('unsupported typed array');
}

export function itemSize(dtype: DType): number {
  return CTORS[dtype].BYTES_PER_ELEMENT;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The frame bytes of a typed array (a view, no copy). Node and x86/ARM are little-endian. */
export function toFrame(array: TypedArray): Buffer {
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
}

export function specOf(b: NamedBuffer): BufferSpec {
  if (elementCount(b.shape) !== b.array.length) {
    throw new RangeError(`buffer ${b.name}: shape [${b.shape}] does not hold ${b.array.length} elements`);
  }
  return { name: b.name, dtype: dtypeOf(b.array), shape: b.shape };
}

/**
 * Reads one received frame as a typed array. Copies into a fresh, aligned ArrayBuffer: ZeroMQ
 * frames may start at any byte offset, and a typed array view needs element alignment.
 * Returns an error string when the byte length does not match the description.
 */
export function fromFrame(spec: BufferSpec, frame: Buffer): TypedArray | string {
  const want = elementCount(spec.shape) * itemSize(spec.dtype);
  if (frame.length !== want) {
    return `buffer ${spec.name}: ${frame.length} bytes, expected ${want} (${spec.dtype} [${spec.shape}])`;
  }
  const copy = new ArrayBuffer(want);
  new Uint8Array(copy).set(frame);
  return new CTORS[spec.dtype](copy);
}
