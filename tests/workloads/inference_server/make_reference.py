"""Regenerates reference.json: embeddings of a few texts computed by the
upstream sentence-transformers pipeline, which check_model.py compares the
numpy implementation against.

Not part of setup: it needs sentence-transformers (and torch), which the
project's venv deliberately does not install. Run once by hand in a separate
venv:

    python3 -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers
    /tmp/st/bin/python make_reference.py .venv/share/all-MiniLM-L6-v2 reference.json
"""

import json
import sys

import sentence_transformers
from sentence_transformers import SentenceTransformer

TEXTS = [
    "The cat sits on the mat.",
    "A cat is sitting on a rug.",
    "Quarterly revenue grew by 12 percent.",
    "snaprun restores a warmed inference process.",
    "Héllo, Wörld! naïve café — ünïcödé 東京 tokens; don't stop.",
    "",
    "a " * 300,  # longer than max_seq_length: checks truncation
]


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    model = SentenceTransformer(model_dir, device="cpu")
    emb = model.encode(TEXTS, normalize_embeddings=True)
    doc = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "generator": "sentence-transformers " + sentence_transformers.__version__,
        "texts": TEXTS,
        "embeddings": [[round(float(v), 6) for v in row] for row in emb],
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f)


if __name__ == "__main__":
    main()
