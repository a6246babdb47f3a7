"""The long verbs' progress (dmfr/progress.py): plain lines at a bounded rate away from a terminal,
and `dmfr data pack` of a real folder says where it is on stderr while stdout keeps its summary."""
from __future__ import annotations

import io

from dmfr.cli.__main__ import main
from dmfr.progress import Progress


def test_plain_lines_start_at_most_every_interval_and_end():
    out, now = io.StringIO(), [0.0]
    p = Progress(100, "embedding", unit="images", every_s=10, stream=out, tty=False, clock=lambda: now[0])
    for i in range(100):
        now[0] = (i + 1) * 0.25  # one image per 250 ms: 25 s in all
        p.update()
    p.close()
    p.close()  # closing twice prints the end once
    lines = out.getvalue().splitlines()
    # at 0 s, then the first update ≥ 10 s after (image 40 at 10 s: 40/10 = 4 images/s, 60 left
    # → ETA 15 s), again ≥ 10 s after that (image 80 at 20 s), and the end
    assert lines == ["embedding: 0/100 images",
                     "embedding: 40/100 images (40%), 4.0 images/s, ETA 15s",
                     "embedding: 80/100 images (80%), 4.0 images/s, ETA 5s",
                     "embedding: 100/100 images in 25s"]


def test_a_terminal_gets_a_tqdm_bar_and_no_plain_lines():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    with Progress(3, "embedding", unit="images", stream=out) as p:
        p.update(3)
    text = out.getvalue()
    assert "\r" in text and "3/3" in text
    assert "embedding: 0/3" not in text


def test_data_pack_reports_progress_on_stderr(tmp_path, capsys):
    from engine_helpers import write_random_images

    src = tmp_path / "faces"
    for identity in ("a", "b", "c"):  # root/identity/image layout
        write_random_images(src / identity, 4, seed=ord(identity))
    assert main(["data", "pack", str(src), str(tmp_path / "train.rec")]) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert err[0] == "data pack train.rec: 0/12 images"
    assert err[-1].startswith("data pack train.rec: 12/12 images in ")
    assert "packed 12 images" in captured.out and "data pack" not in captured.out
