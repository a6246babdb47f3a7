"""Writes real evaluation inputs into a folder for the service tests (test/ts/service-hardening.test.ts):
a dmfr training checkpoint, a small insightface .bin (verification) and images with media/pairs
lists (templates), and an image folder root/identity/image (a dataset to register). Prints {"checkpoint": PATH} as its last stdout line.

python test/python/eval_inputs.py DIR  (with PYTHONPATH=python:test/python)
"""
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dmfr.data.binpack import write_bin
from engine_helpers import save_training_checkpoint


def _png(rng) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def main(root: Path) -> None:
    rng = np.random.default_rng(0)
    ckpt, _ = save_training_checkpoint(root / "ckpt")
    # verification: 8 pairs at images 2i, 2i+1, half same
    write_bin(str(root / "tiny.bin"), [_png(rng) for _ in range(16)], [i % 2 == 0 for i in range(8)])
    # templates: 4 templates of 2 identities, 2 media of 1 image each
    (root / "images").mkdir()
    media = []
    for t in range(4):
        for m in range(2):
            name = f"t{t}m{m}.png"
            (root / "images" / name).write_bytes(_png(rng))
            media.append(f"{name} {t} {t * 2 + m}")
    (root / "media.txt").write_text("\n".join(media) + "\n")
    pairs = [f"{a} {b} {int(a // 2 == b // 2)}" for a in range(4) for b in range(a + 1, 4)]
    (root / "pairs.txt").write_text("\n".join(pairs) + "\n")
    for ident in range(2):
        (root / "faces" / f"person{ident}").mkdir(parents=True)
        for k in range(2):
            (root / "faces" / f"person{ident}" / f"{k}.png").write_bytes(_png(rng))
    print(json.dumps({"checkpoint": str(ckpt)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
