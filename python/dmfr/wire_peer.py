"""`python -m dmfr.wire_peer`: a scripted rank for the cross-language wire test (test/ts/wire.test.ts).

It speaks the protocol through the same `RankLink` the worker uses, from the same environment
(DMFR_CONTROL_ENDPOINT, DMFR_EVENTS_ENDPOINT, DMFR_RUN_ID, DMFR_KEY; RANK, WORLD_SIZE), and sends
every rank message type once: hello → (config) → ready with the labels/domains/pair buffers →
credit → (≥ `--plans` plans) → metrics, heartbeat, checkpoint-saved, error → (stop) → bye.
Each message it receives is printed on stdout as one JSON line (type + decoded body, buffers as
dtype/shape/values); the last line is {"peer": "done", "rejected": {reason: count}}. Exit 0 when
the whole sequence went through, 1 on a timeout or a missing message.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time

import numpy as np

from dmfr.wire import ControllerLost, Endpoints, Message, RankLink


def summary(msg: Message) -> dict:
    body = {k: v for k, v in msg.body.items() if k != "buffers"}
    if msg.type == "config":  # the whole config is long: name its sections
        body["config"] = sorted(body["config"])
    out = {"type": msg.type, "rank": msg.header["rank"], "body": body}
    if msg.buffers:
        out["buffers"] = {name: {"dtype": a.dtype.name, "shape": list(a.shape), "values": a.ravel().tolist()}
                          for name, a in msg.buffers.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dmfr.wire_peer", description=__doc__.splitlines()[0])
    p.add_argument("--num-samples", type=int, default=32)
    p.add_argument("--num-classes", type=int, default=4)
    p.add_argument("--credit", type=int, default=2, help="initial credit window")
    p.add_argument("--plans", type=int, default=1, help="plans to receive before the event messages")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each expected message")
    args = p.parse_args(argv)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    link = RankLink(Endpoints.from_env(), rank, heartbeat_s=3600.0, controller_timeout_s=args.timeout,
                    lost_exit_grace_s=None, deliver_heartbeats=True).start()
    plans: list[Message] = []

    def expect(*types: str) -> Message:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            msg = link.recv(timeout=0.2)
            if msg is None:
                continue
            print(json.dumps(summary(msg)), flush=True)
            if msg.type == "plan":
                plans.append(msg)
            if msg.type in types:
                return msg
        raise TimeoutError(f"no {'/'.join(types)} within {args.timeout:g} s")

    ok = False
    try:
        link.send("hello", {"rank": rank, "local_rank": rank, "world_size": world, "host": socket.gethostname(),
                            "pid": os.getpid(), "device": "cpu", "torch_version": "none",
                            "python_version": platform.python_version()})
        expect("config")
        n = args.num_samples
        link.send("ready", {"rank": rank, "num_samples": n, "num_classes": args.num_classes,
                            "domains": [{"id": 0, "name": "real", "kind": "real"},
                                        {"id": 1, "name": "pose", "kind": "generative", "generator": "pose"}],
                            "start_step": 0},
                  {"labels": (np.arange(n) % args.num_classes).astype(np.int32),
                   "domains": (np.arange(n) % 2).astype(np.int16),
                   "pair": np.where(np.arange(n) % 2 == 1, np.arange(n) - 1, -1).astype(np.int32)} if rank == 0 else None)
        link.send("credit", {"chunks": args.credit})
        while len(plans) < args.plans:
            expect("plan")
        last = plans[-1].body
        step = last["first_step"] + last["num_steps"] - 1
        link.send("metrics", {"step": step, "loss": 1.5, "lr": 0.1, "samples_per_s": 100.0, "plan_wait_s": 0.0,
                              "step_time_s": 0.01, "terms": {"L_cls": 1.5}})
        link.send("heartbeat", {"step": step})
        link.send("checkpoint-saved", {"step": step, "path": f"/tmp/wire-peer/step-{step + 1:08d}.pt", "bytes": 1234})
        link.send("error", {"message": "wire peer: scripted error", "type": "PeerError",
                            "traceback": "Traceback (most recent call last):\n  scripted\nPeerError", "step": step})
        expect("stop")
        link.send("bye", {"reason": "stopped", "last_step": step})
        ok = True
    except (TimeoutError, ControllerLost) as e:
        print(f"dmfr.wire_peer: {e}", file=sys.stderr)
    finally:
        link.close()
        print(json.dumps({"peer": "done", "ok": ok, "rejected": dict(link.rejected)}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
