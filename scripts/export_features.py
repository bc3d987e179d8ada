"""Export a run's EMA-model embeddings of its training images (labeled + unlabeled) with their
true labels, for ``scripts/compare_labeling.py --features``.

    python scripts/export_features.py --run saved_models/fashion_mnist/RUN --out feats.npz
"""
import argparse

import numpy as np

from hdl.algorithms.run.relabel_run import embed_training_set, load_run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", default="best", choices=["best", "latest"])
    a = p.parse_args(argv)
    alg = load_run(a.run, a.checkpoint, device="cpu")
    index, feats = embed_training_set(alg)
    labels = np.asarray(alg.split_info.train_y)[index]
    np.savez(a.out, feats=feats.numpy(), labels=labels, index=index)
    print(f"{a.out}: {feats.shape[0]} x {feats.shape[1]} features, {len(np.unique(labels))} classes")


if __name__ == "__main__":
    main()
