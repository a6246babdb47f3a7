"""Table 1 as the paper measures it (§ "Similarity of Synthesis Samples", Table 1): the intra- and
inter-class similarity of one set of samples as three models see it, each row labelled with its
model and its feature space:

- "Baseline": the real-only model, H(x) ("We extract the features from the last layer of the
  baseline model");
- "Add synthetic samples": the model trained with synthetic samples mixed in, H(x);
- "After filtering": the filter model, synthetic samples' features passed through its filter,
  F(H(x)), real samples' H(x) (F acts on synthetic features only, "Filter-based DMFR").

`model_features` gives any model's features in the space Table 1 uses for it, so a filter model is
never read at H(x) by mistake.
"""
from __future__ import annotations

import numpy as np

from dmfr.analysis.similarity import similarity_table

PLAIN = "H(x)"
FILTERED = "F(H(x)) synthetic, H(x) real"
# (paper's row, the kind of model it reads)
PAPER_ROWS = (("Baseline", "real-only model"), ("Add synthetic samples", "mixed model"),
              ("After filtering", "filter model"))


def has_filter(model) -> bool:
    import torch

    return isinstance(getattr(model, "filter", None), torch.nn.Module)


def apply_filter(model, features: np.ndarray, synthetic: np.ndarray, device="cpu") -> np.ndarray:
    """`features` (H(x), one row per sample) with the filter model's F applied to the synthetic rows."""
    import torch

    out = np.array(features, dtype=np.float32, copy=True)
    if synthetic.any():
        with torch.no_grad():
            z = torch.from_numpy(np.ascontiguousarray(out[synthetic])).to(device)
            out[synthetic] = model.filter(z).float().cpu().numpy()
    return out


def model_features(embedder, images, synthetic: np.ndarray) -> tuple[np.ndarray, str]:
    """(features, feature space) of uint8 HWC `images` for Table 1: H(x) (no flip, the last layer
    as the paper reads it), with F applied to synthetic samples when the model is a filter model."""
    feats = embedder.embed_images(list(images), flip=False)
    if has_filter(embedder.model):
        return apply_filter(embedder.model, feats, np.asarray(synthetic, bool), embedder.device), FILTERED
    return feats, PLAIN


def table1(models: dict[str, object], images, identities: np.ndarray, synthetic: np.ndarray) -> list[dict]:
    """One labelled row per paper row: `models` maps "real-only model", "mixed model" and
    "filter model" (any subset) to an Embedder; each row holds the similarity rows of
    `similarity_table` (real, synthetic, all, real_vs_synthetic)."""
    modality = np.where(np.asarray(synthetic, bool), "synthetic", "real")
    rows = []
    for paper_row, kind in PAPER_ROWS:
        if kind not in models:
            continue
        feats, space = model_features(models[kind], images, synthetic)
        if kind == "filter model" and space != FILTERED:
            raise ValueError("Table 1 'After filtering' needs a filter-method model (no filter F in it)")
        rows.append({"row": paper_row, "model": kind, "features": space,
                     "similarity": similarity_table(feats, identities, modality)})
    return rows


def to_markdown(rows: list[dict], subset: str = "synthetic") -> str:
    """The paper's layout for one sample subset (default the synthetic samples, where the modality
    shows), labelled with model and feature space."""
    fmt = lambda v: "—" if v is None else f"{v:.3f}"
    lines = [f"| Similarity ({subset} samples) | model | features | Intraclass | Interclass |",
             "|---|---|---|---|---|"]
    for r in rows:
        s = r["similarity"].get(subset)
        if s is not None:
            lines.append(f"| {r['row']} | {r['model']} | {r['features']} | {fmt(s['intraclass'])} | {fmt(s['interclass'])} |")
    return "\n".join(lines) + "\n"
