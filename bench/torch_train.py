"""Competitor for the training step: full-batch gradient descent on mse in
PyTorch (torch.optim.SGD), from the same weights and data as pathkernel.
Reads X.pkm, Y.pkm, theta.pkm from --dir; writes theta_torch.pkm and
losses_torch.pkm (the loss before each step); prints time_per_step,
first_loss and final_loss (the loss at the final weights).
"""
import argparse
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.require("numpy")
torch = common.require("torch")
import pkfile  # noqa: E402
import torchnet  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_dir_arg(p)
    common.add_net_args(p)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--steps", type=int, default=50)
    args = p.parse_args()

    X, Y, net = torchnet.load_training(args)

    warm = copy.deepcopy(net)   # warm-up step: allocator, thread pool, kernels
    torchnet.train(warm, torch.optim.SGD(warm.parameters(), lr=args.lr), X, Y, 1)

    opt = torch.optim.SGD(net.parameters(), lr=args.lr)
    t0 = time.perf_counter()
    losses = torchnet.train(net, opt, X, Y, args.steps)
    elapsed = time.perf_counter() - t0

    pkfile.write_matrix(os.path.join(args.dir, "theta_torch.pkm"), torchnet.flat_params(net))
    pkfile.write_matrix(os.path.join(args.dir, "losses_torch.pkm"), losses.numpy())
    common.emit("time_per_step", elapsed / max(args.steps, 1))
    common.emit("first_loss", losses[0].item() if args.steps else float("nan"))
    common.emit("final_loss", torchnet.final_loss(net, X, Y))


if __name__ == "__main__":
    common.run(main)
