// Multi-node runs (docs/multinode.md): rank 0's node is started by the controller; every other
// node joins with `dmfr join JOIN.json --node-rank K`, which starts torchrun there with the same
// endpoints, key and torchrun static rendezvous (master address and port on rank 0's node).
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

export const JoinInfo = Type.Object(
  {
    version: Type.Literal(1),
    run_id: Type.String({ minLength: 1 }),
    control: Type.String({ pattern: '^tcp://' }),
    events: Type.String({ pattern: '^tcp://' }),
    key: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    nnodes: Type.Integer({ minimum: 2 }),
    nproc_per_node: Type.Integer({ minimum: 1 }),
    master_addr: Type.String({ minLength: 1 }),
    master_port: Type.Integer({ minimum: 1, maximum: 65535 }),
    device: Type.String(),
    threads_per_rank: Type.Integer({ minimum: 0 }),
    curve_server_key: Type.Union([Type.String({ minLength: 40, maxLength: 40 }), Type.Null()]),
  },
  { additionalProperties: false },
);
export type JoinInfo = Static<typeof JoinInfo>;

/** A free TCP port on `host` (bound and released; torchrun binds it next). */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** `tcp://0.0.0.0:4242` → `tcp://<advertise>:4242`: the address other nodes can reach. */
export function advertised(endpoint: string, advertise: string): string {
  return advertise ? endpoint.replace(/^tcp:\/\/(\[[^\]]*\]|[^:]*):/, `tcp://${advertise}:`) : endpoint;
}

/** Written with mode 0600: it holds the run's HMAC key. */
export function writeJoinInfo(file: string, info: JoinInfo): void {
  writeFileSync(file, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 });
}

export function readJoinInfo(file: string): JoinInfo {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read the join file: ${(e as Error).message}`);
  }
  const err = Value.Errors(JoinInfo, value).First();
  if (err) throw new Error(`${file}: ${err.path || '/'}: ${err.message}`);
  return value as JoinInfo;
}
