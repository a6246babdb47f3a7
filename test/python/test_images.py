"""Image decoding, arcface_torch normalisation and 5-point alignment."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dmfr.data import align
from dmfr.data.images import decode_image, load_image, to_tensor_batch
from dmfr.errors import DataError


def encode(arr, fmt, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


def test_formats_decode_to_rgb_uint8():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    assert np.array_equal(decode_image(encode(rgb, "PNG"), "x"), rgb)
    for fmt in ("PPM", "PNG", "GIF"):
        out = decode_image(encode(grey, fmt if fmt != "PPM" else "PPM", "L"), "x")
        assert out.shape == (20, 30, 3) and np.array_equal(out[..., 1], grey)
    xs, ys = np.meshgrid(np.arange(30) * 8, np.arange(20) * 12)
    smooth = np.dstack([xs, ys, np.full((20, 30), 90)]).astype(np.uint8)
    jpg = decode_image(encode(smooth, "JPEG"), "x")
    assert jpg.shape == (20, 30, 3) and np.abs(jpg.astype(int) - smooth).mean() < 4
    grey16 = (grey.astype(np.uint16) * 257)
    buf = io.BytesIO()
    Image.fromarray(grey16).save(buf, format="PNG")
    assert np.array_equal(decode_image(buf.getvalue(), "x")[..., 0], grey)


def test_bad_bytes_name_where(tmp_path):
    with pytest.raises(DataError, match=r"a.rec offset 8: cannot decode image"):
        decode_image(b"\xff\xd8\xff\xe0garbage", "a.rec offset 8")
    with pytest.raises(DataError, match="empty image data"):
        decode_image(b"", "here")
    with pytest.raises(DataError, match=rf"{tmp_path}/nope.jpg: cannot read image"):
        load_image(tmp_path / "nope.jpg")


def test_to_tensor_batch_normalises_and_resizes():
    x = np.zeros((2, 2, 3), np.uint8)
    x[0, 0] = (0, 255, 128)
    t = to_tensor_batch([x], 2)
    assert t.dtype == torch.float32 and t.shape == (1, 3, 2, 2)
    assert t[0, :, 0, 0].tolist() == pytest.approx([-1.0, 1.0, (128 / 255 - 0.5) / 0.5], abs=1e-6)
    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(3)]
    # arcface_torch: ToTensor (x / 255, CHW) then Normalize(0.5, 0.5), in float32
    ref = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float().div(255).sub(0.5).div(0.5) for im in imgs])
    out = to_tensor_batch(imgs, 112)
    assert out.is_contiguous() and torch.equal(out, ref)
    big = to_tensor_batch([np.full((250, 200, 3), 255, np.uint8)], 112)
    assert big.shape == (1, 3, 112, 112) and float(big.min()) == 1.0


def test_umeyama_recovers_a_similarity():
    angle, scale, t = 0.3, 1.7, np.array([12.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.random.default_rng(1).uniform(0, 100, (5, 2))
    m = align.umeyama(src, src @ rot.T + t)
    assert np.allclose(m[:, :2], rot) and np.allclose(m[:, 2], t)
    assert np.allclose(align.estimate_norm(align.ARCFACE_DST), [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    assert np.allclose(align.template(224), align.ARCFACE_DST * 2)
    with pytest.raises(DataError, match="5 finite"):
        align.estimate_norm(np.zeros((4, 2)))


def test_norm_crop_pixel_convention_matches_integer_centres():
    face = np.random.default_rng(2).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    assert np.array_equal(align.norm_crop(face, align.ARCFACE_DST), face)
    canvas = np.zeros((200, 240, 3), np.uint8)
    canvas[30:142, 50:162] = face  # landmarks shifted by the same offset
    assert np.array_equal(align.norm_crop(canvas, align.ARCFACE_DST + [50, 30]), face)
    # half-size face: landmarks at half scale -> a 2x upsampled crop (bilinear) around it
    small = np.asarray(Image.fromarray(face).resize((56, 56), Image.BILINEAR))
    out = align.norm_crop(small, (align.ARCFACE_DST + 0.5) / 2 - 0.5)
    assert out.shape == (112, 112, 3) and np.abs(out.astype(int) - face).mean() < 60
