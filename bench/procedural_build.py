"""Build time of the procedural benchmark (python/dmfr/data/procedural.py), measured side by side.

Every rank builds the training set at start, so the quick preset's build must stay within a few
seconds; this prints the quick preset's (32 px, 32 identities × 8), the schema default's (112 px,
64 × 8), their ratio, and the in-process cache hit.

    OMP_NUM_THREADS=1 PYTHONPATH=python .venv/bin/python bench/procedural_build.py
"""
from __future__ import annotations

import time

from dmfr.data import procedural

QUICK = {"data": {"image_size": 32, "procedural": {"seed": 0, "identities": 32, "images_per_identity": 8}}}
DEFAULT = {"data": {"image_size": 112, "procedural": {"seed": 0, "identities": 64, "images_per_identity": 8}}}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    quick, t_quick = timed(lambda: procedural.build_train_set(QUICK))
    _, t_hit = timed(lambda: procedural.build_train_set(QUICK))
    default, t_default = timed(lambda: procedural.build_train_set(DEFAULT))
    _, t_test = timed(lambda: procedural.build_test_set(QUICK, "cross_pose"))
    print(f"quick preset   : {len(quick):6d} samples  {t_quick:6.2f} s")
    print(f"cached rebuild : {t_hit * 1e3:9.3f} ms")
    print(f"default 112 px : {len(default):6d} samples  {t_default:6.2f} s  ({t_default / t_quick:.1f}x quick)")
    print(f"cross_pose test: {t_test:6.2f} s (32 px, FAR floor 1e-4)")


if __name__ == "__main__":
    main()
