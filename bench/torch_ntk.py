"""Competitor for the empirical NTK Gram: the functorch recipe of PyTorch 1.13
(make_functional, per-example Jacobians by vmap(jacrev) w.r.t. every
parameter tensor, einsum contraction summed over the tensors), from the
same weights and inputs as pathkernel. Reads X1.pkm, X2.pkm, theta.pkm from
--dir; writes gram_torch.pkm (n1 x n2, summed over the K outputs) and
prints time.

Memory: an n x P Jacobian of 2048 examples of {32,512,512,1} is 4.6 GB, so
rows go through vmap in chunks (--chunk, 256 by default, as the functorch
tutorials advise): X2's Jacobian is computed once and kept as chunks, X1's
is computed one chunk at a time and contracted against all of X2's.

--check-rows N: afterwards recompute the first N rows from plain autograd
Jacobians and print check_max_rel_err (relative to the largest entry).
--autograd-check: instead write jac_torch.pkm, the Jacobian of X1 by plain
torch.autograd, one example at a time: (n1*K) x P, rows example-major.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.require("numpy")
torch, functorch = common.require("torch", "functorch")
import pkfile  # noqa: E402
import torchnet  # noqa: E402


def functorch_gram(net, X1, X2, chunk):
    fmodel, params = functorch.make_functional(net)
    params = tuple(p.detach() for p in params)   # no autograd graph around the transforms

    def f_single(params, x):                     # one example -> its K outputs
        return fmodel(params, x.unsqueeze(0)).squeeze(0)

    jac = functorch.vmap(functorch.jacrev(f_single), in_dims=(None, 0))

    def jac_chunks(X):   # (row offset, [rows x K x numel for each parameter tensor])
        for i in range(0, X.shape[0], chunk):
            yield i, [j.flatten(2) for j in jac(params, X[i:i + chunk])]

    J2 = list(jac_chunks(X2))
    G = torch.empty(X1.shape[0], X2.shape[0])
    for i, J1 in jac_chunks(X1):
        for j, J2c in J2:
            G[i:i + chunk, j:j + chunk] = sum(
                torch.einsum("akp,bkp->ab", a, b) for a, b in zip(J1, J2c))
    return G


def autograd_jacobian(net, X):
    params = list(net.parameters())
    K = net.layers[-1].out_features
    J = torch.empty(X.shape[0] * K, sum(p.numel() for p in params))
    for i in range(X.shape[0]):
        f = net(X[i:i + 1]).squeeze(0)
        for k in range(K):
            g = torch.autograd.grad(f[k], params, retain_graph=k + 1 < K)
            J[i * K + k] = torch.cat([t.reshape(-1) for t in g])
    return J


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_dir_arg(p)
    common.add_net_args(p)
    p.add_argument("--chunk", type=int, default=256, help="rows per vmap call")
    p.add_argument("--check-rows", type=int, default=0)
    p.add_argument("--autograd-check", action="store_true")
    args = p.parse_args()

    path = lambda name: os.path.join(args.dir, name)
    net = torchnet.build(args, torchnet.load(args, "theta.pkm"))
    X1 = torchnet.load(args, "X1.pkm")
    common.check_cols("X1.pkm", X1, args.sizes[0])
    if args.autograd_check:
        pkfile.write_matrix(path("jac_torch.pkm"), autograd_jacobian(net, X1).numpy())
        return
    X2 = torchnet.load(args, "X2.pkm")
    common.check_cols("X2.pkm", X2, args.sizes[0])

    functorch_gram(net, X1[:2], X2[:2], args.chunk)   # warm-up
    t0 = time.perf_counter()
    G = functorch_gram(net, X1, X2, args.chunk)
    elapsed = time.perf_counter() - t0
    pkfile.write_matrix(path("gram_torch.pkm"), G.numpy())
    common.emit("time", elapsed)

    if args.check_rows > 0:
        n, K = min(args.check_rows, X1.shape[0]), net.layers[-1].out_features
        Ja = autograd_jacobian(net, X1[:n]).reshape(n, K, -1)
        Jb = autograd_jacobian(net, X2).reshape(X2.shape[0], K, -1)
        ref = torch.einsum("akp,bkp->ab", Ja, Jb)
        common.emit("check_rows", n)
        common.emit("check_max_rel_err", ((G[:n] - ref).abs().max() / ref.abs().max()).item())


if __name__ == "__main__":
    common.run(main)
