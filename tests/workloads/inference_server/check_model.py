"""Checks the numpy all-MiniLM-L6-v2 against reference.json (embeddings from
the upstream sentence-transformers pipeline, see make_reference.py) and for
sense (similar sentences closer than unrelated ones). Run by scripts/test.sh."""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import json  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minilm  # noqa: E402

TOLERANCE = 1e-4


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "reference.json"), encoding="utf-8") as f:
        ref = json.load(f)
    model = minilm.MiniLM(minilm.default_model_dir())
    passed = failed = 0

    def check(name, ok, detail):
        nonlocal passed, failed
        print(f"workload check {name}: {'ok' if ok else 'FAILED'} ({detail})")
        passed, failed = passed + ok, failed + (not ok)

    got = model.embed(ref["texts"])
    want = np.asarray(ref["embeddings"], dtype=np.float32)
    diff = float(np.abs(got - want).max())
    check("reference", diff < TOLERANCE, f"max |diff| {diff:.2e} vs {ref['generator']}, {len(ref['texts'])} texts")
    e = model.embed(["The cat sits on the mat.", "A cat is sitting on a rug.", "Quarterly revenue grew by 12 percent."])
    near, far = float(e[0] @ e[1]), float(e[0] @ e[2])
    check("similarity", near > far + 0.3, f"cos similar {near:.3f}, unrelated {far:.3f}")
    one, again = model.embed(ref["texts"][:1]), model.embed(ref["texts"][:1])
    check("deterministic", bool(np.array_equal(one, again)), "same request, same bits")
    print(f"workload: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
