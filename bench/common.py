# Shared pieces of the Python benchmark scripts: the "skipped" exit code,
# the `key value` output lines, the network command-line options, and the
# OpenMP wait policy that keeps Debian's torch from fighting OpenBLAS.
import importlib
import os
import sys

# Debian's torch runs elementwise ops on libgomp threads but GEMMs on
# OpenBLAS's own pthreads; with libgomp's default spin-waiting the two pools
# fight over the cores and a training step of {32,512,512,1} takes ~1.7x as
# long. Passive waiting is the fair setting for the competitor (libgomp reads
# it when torch is imported); an explicit OMP_WAIT_POLICY still wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

EXIT_SKIPPED = 3   # the Lua side reports the benchmark as skipped
ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "softplus", "gelu", "erf", "sin")


def require(*names):
    """Import the named modules, or exit with EXIT_SKIPPED saying which failed."""
    mods = []
    for name in names:
        try:
            mods.append(importlib.import_module(name))
        except Exception as e:   # ImportError, or a broken install raising anything
            print(f"error: {os.path.basename(sys.argv[0])}: cannot import {name} "
                  f"with {sys.executable}: {e}", file=sys.stderr)
            sys.exit(EXIT_SKIPPED)
    return mods[0] if len(mods) == 1 else mods


def emit(key, value):
    """Print one machine-readable `key value` line; floats in repr form."""
    print(f"{key} {value!r}" if isinstance(value, float) else f"{key} {value}", flush=True)


def sizes(text):
    s = [int(v) for v in text.split(",")]
    if len(s) < 2 or min(s) < 1:
        raise ValueError(f"bad --sizes {text!r}: need at least two positive integers")
    return s


def add_dir_arg(parser):
    parser.add_argument("--dir", required=True, help="folder holding the .pkm inputs and outputs")


def add_net_args(parser):
    parser.add_argument("--sizes", type=sizes, required=True, help="layer widths d0,d1,...,dL")
    parser.add_argument("--activation", choices=ACTIVATIONS, required=True)
    parser.add_argument("--param", choices=("ntk", "standard"), default="ntk")
    parser.add_argument("--sigma-w", type=float, default=1.0)
    parser.add_argument("--sigma-b", type=float, default=0.1)


def check_cols(name, a, cols):
    if a.shape[1] != cols:
        raise ValueError(f"{name} has {a.shape[1]} columns, expected {cols}")


def run(main):
    """Run main, turning bad inputs (files, shapes) into one error line and exit 1."""
    try:
        main()
    except (OSError, ValueError) as e:
        print(f"error: {os.path.basename(sys.argv[0])}: {e}", file=sys.stderr)
        sys.exit(1)
