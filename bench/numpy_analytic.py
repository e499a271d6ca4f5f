"""Reference for the infinite-width kernels: a vectorized NumPy version of
the NNGP / NTK recursion of DESIGN.md section 4 (ntk parameterization, as
neural-tangents computes it) for a network with `depth` hidden layers, i.e.
depth + 1 dense layers. Reads X1.pkm, X2.pkm from --dir; writes
ntk_numpy.pkm and nngp_numpy.pkm (n1 x n2); prints time.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

np = common.require("numpy")
import pkfile  # noqa: E402


# Each nonlinearity maps (q1, q2, c) = (Sigma(x,x), Sigma(x',x'), Sigma(x,x'))
# to (E[phi(u)phi(v)], E[phi'(u)phi'(v)]) for (u, v) ~ N(0, [[q1, c], [c, q2]]).
def relu(q1, q2, c):
    s = np.sqrt(np.maximum(q1 * q2 - c * c, 0.0))   # rounding can make it negative
    angle = np.pi - np.arctan2(s, c)
    return (s + angle * c) / (2 * np.pi), angle / (2 * np.pi)


def erf(q1, q2, c):
    d = (1 + 2 * q1) * (1 + 2 * q2)
    K = (2 / np.pi) * np.arcsin(np.clip(2 * c / np.sqrt(d), -1.0, 1.0))
    return K, (4 / np.pi) / np.sqrt(d - 4 * c * c)


def identity(q1, q2, c):
    return c, np.ones_like(c)


def kernels(X1, X2, depth, phi, sw, sb):
    """(NNGP, NTK) Grams: cross terms as n1 x n2 matrices, the variances
    Sigma(x,x) of each side as vectors."""
    d0 = X1.shape[1]
    K, k1, k2 = X1 @ X2.T / d0, np.einsum("ij,ij->i", X1, X1) / d0, np.einsum("ij,ij->i", X2, X2) / d0
    theta_tilde = 0.0
    for layer in range(depth + 1):
        S, s1, s2 = sw**2 * K + sb**2, sw**2 * k1 + sb**2, sw**2 * k2 + sb**2
        theta = S + sw**2 * theta_tilde
        if layer == depth:
            return S, theta
        K, S_dot = phi(s1[:, None], s2[None, :], S)
        k1, k2 = phi(s1, s1, s1)[0], phi(s2, s2, s2)[0]
        theta_tilde = S_dot * theta


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_dir_arg(p)
    p.add_argument("--depth", type=int, required=True, help="number of hidden layers")
    p.add_argument("--activation", choices=("relu", "erf", "identity"), required=True)
    p.add_argument("--sigma-w", type=float, default=1.0)
    p.add_argument("--sigma-b", type=float, default=0.1)
    args = p.parse_args()

    load = lambda name: pkfile.read_matrix(os.path.join(args.dir, name))
    X1, X2 = load("X1.pkm"), load("X2.pkm")
    common.check_cols("X2.pkm", X2, X1.shape[1])
    phi = {"relu": relu, "erf": erf, "identity": identity}[args.activation]
    t0 = time.perf_counter()
    nngp, ntk = kernels(X1, X2, args.depth, phi, args.sigma_w, args.sigma_b)
    elapsed = time.perf_counter() - t0
    pkfile.write_matrix(os.path.join(args.dir, "ntk_numpy.pkm"), ntk)
    pkfile.write_matrix(os.path.join(args.dir, "nngp_numpy.pkm"), nngp)
    common.emit("time", elapsed)


if __name__ == "__main__":
    common.run(main)
