"""Competitor for kernel ridge regression: scikit-learn's KernelRidge with the
RBF kernel exp(-gamma ||x - x'||^2) and ridge alpha = lambda. Reads Xtr.pkm,
Ytr.pkm, Xte.pkm from --dir; writes pred_sklearn.pkm (n_test x K); prints
time (fit + predict).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.require("numpy")
kernel_ridge = common.require("sklearn.kernel_ridge")
import pkfile  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_dir_arg(p)
    p.add_argument("--gamma", type=float, required=True)
    p.add_argument("--lambda", dest="lam", type=float, required=True)
    args = p.parse_args()

    load = lambda name: pkfile.read_matrix(os.path.join(args.dir, name))
    Xtr, Ytr, Xte = load("Xtr.pkm"), load("Ytr.pkm"), load("Xte.pkm")
    common.check_cols("Xte.pkm", Xte, Xtr.shape[1])
    if Ytr.shape[0] != Xtr.shape[0]:
        raise ValueError(f"Ytr.pkm has {Ytr.shape[0]} rows, Xtr.pkm has {Xtr.shape[0]}")
    t0 = time.perf_counter()
    model = kernel_ridge.KernelRidge(alpha=args.lam, kernel="rbf", gamma=args.gamma)
    pred = model.fit(Xtr, Ytr).predict(Xte)
    elapsed = time.perf_counter() - t0
    pkfile.write_matrix(os.path.join(args.dir, "pred_sklearn.pkm"), pred.reshape(Xte.shape[0], -1))
    common.emit("time", elapsed)


if __name__ == "__main__":
    common.run(main)
