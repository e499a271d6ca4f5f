"""Reference optimizer trajectories: full-batch training on mse with
torch.optim's SGD (plain, momentum, Nesterov), Adam or AdamW, so pathkernel's
optimizers can be checked against them to 1e-12. Reads X.pkm, Y.pkm,
theta.pkm from --dir; writes theta_torch.pkm and losses_torch.pkm.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.require("numpy")
torch = common.require("torch")
import pkfile  # noqa: E402
import torchnet  # noqa: E402


def make_optimizer(params, a):
    if a.optimizer in ("sgd", "momentum", "nesterov"):
        mu = 0.0 if a.optimizer == "sgd" else a.momentum
        return torch.optim.SGD(params, lr=a.lr, momentum=mu, dampening=a.dampening,
                               nesterov=a.optimizer == "nesterov", weight_decay=a.weight_decay)
    cls = torch.optim.Adam if a.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps, weight_decay=a.weight_decay)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_dir_arg(p)
    common.add_net_args(p)
    p.add_argument("--loss", choices=("mse",), default="mse")
    p.add_argument("--optimizer", choices=("sgd", "momentum", "nesterov", "adam", "adamw"),
                   required=True)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--dampening", type=float, default=0.0)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", type=float, default=0.0)
    args = p.parse_args()
    if args.optimizer == "nesterov" and args.dampening != 0:
        p.error("nesterov needs --dampening 0 (as torch.optim.SGD does)")

    X, Y, net = torchnet.load_training(args)
    losses = torchnet.train(net, make_optimizer(net.parameters(), args), X, Y, args.steps)

    pkfile.write_matrix(os.path.join(args.dir, "theta_torch.pkm"), torchnet.flat_params(net))
    pkfile.write_matrix(os.path.join(args.dir, "losses_torch.pkm"), losses.numpy())
    common.emit("final_loss", torchnet.final_loss(net, X, Y))


if __name__ == "__main__":
    common.run(main)
