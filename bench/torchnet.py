# pathkernel's fully connected network (DESIGN.md section 3) as a float64
# torch module, its flat parameter layout, loading of the .pkm inputs, the mse
# loss and the training loop shared by the PyTorch competitor scripts.
import math
import os

import torch
import torch.nn.functional as F

import common
import pkfile

torch.set_default_dtype(torch.float64)
torch.set_num_threads(2)


def _softplus(z):
    # F.softplus returns z itself above z = 20 (an error near 2e-9); the
    # pathkernel definition is log(1 + e^z) everywhere.
    return torch.logaddexp(z, torch.zeros_like(z))


ACTIVATIONS = {
    "identity": lambda z: z,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": _softplus,
    "gelu": F.gelu,          # approximate="none": the exact erf form
    "erf": torch.erf,
    "sin": torch.sin,
}


class Net(torch.nn.Module):
    """z_l = (sigma_w/sqrt(d_{l-1})) W_l a_{l-1} + sigma_b b_l ("ntk") or
    W_l a_{l-1} + b_l ("standard"); phi on hidden layers, linear output."""

    def __init__(self, args):
        super().__init__()
        s = args.sizes
        self.layers = torch.nn.ModuleList(torch.nn.Linear(i, o) for i, o in zip(s[:-1], s[1:]))
        self.phi = ACTIVATIONS[args.activation]
        self.ntk = args.param == "ntk"
        self.sigma_w, self.sigma_b = args.sigma_w, args.sigma_b

    def forward(self, a):
        last = len(self.layers) - 1
        for l, lin in enumerate(self.layers):
            if self.ntk:
                z = (self.sigma_w / math.sqrt(lin.in_features)) * F.linear(a, lin.weight) \
                    + self.sigma_b * lin.bias
            else:
                z = lin(a)
            a = z if l == last else self.phi(z)
        return a


def nparams(sizes):
    return sum(o * i + o for i, o in zip(sizes[:-1], sizes[1:]))


def build(args, theta):
    """A Net holding the flat parameter vector theta (W_1, b_1, W_2, b_2, ...)."""
    theta = torch.as_tensor(theta, dtype=torch.float64).reshape(-1)
    if theta.numel() != nparams(args.sizes):
        raise ValueError(f"theta has {theta.numel()} entries, sizes {args.sizes} "
                         f"need {nparams(args.sizes)}")
    net = Net(args)
    off = 0
    with torch.no_grad():
        for p in net.parameters():   # per layer: weight (d_l x d_{l-1}), then bias
            p.copy_(theta[off:off + p.numel()].reshape(p.shape))
            off += p.numel()
    return net


def flat_params(net):
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).numpy()


def mse(f, y):
    """mean over examples of 1/2 ||f_i - y_i||^2"""
    return 0.5 * ((f - y) ** 2).sum() / f.shape[0]


def train(net, opt, X, Y, steps):
    """Full-batch training; returns the loss before each step."""
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = mse(net(X), Y)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses) if losses else torch.zeros(0)


def final_loss(net, X, Y):
    with torch.no_grad():
        return mse(net(X), Y).item()


def load(args, name):
    return torch.from_numpy(pkfile.read_matrix(os.path.join(args.dir, name)))


def load_training(args):
    """X.pkm, Y.pkm and the network holding theta.pkm, shapes checked."""
    X, Y = load(args, "X.pkm"), load(args, "Y.pkm")
    common.check_cols("X.pkm", X, args.sizes[0])
    common.check_cols("Y.pkm", Y, args.sizes[-1])
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"Y.pkm has {Y.shape[0]} rows, X.pkm has {X.shape[0]}")
    return X, Y, build(args, load(args, "theta.pkm"))
