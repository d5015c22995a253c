"""gankit's command line, run from a checkout: `python cli.py ...` is the installed `gankit ...` command.

    python cli.py train --data mnist --epochs 5 --out runs/mnist-dcgan
    python cli.py export runs/mnist-dcgan                       # runs/mnist-dcgan/generator.onnx
    python cli.py generate runs/mnist-dcgan/generator.onnx --seeds 0-9999 --out out/digits

The commands live in inference/gankit_cli (installed with gankit-runtime); generate, info and eval need only the
runtime, train and export need torch and the gankit package.
"""

import sys

try:  # a Ctrl-C during the imports, or an install without the runtime: one line, not a traceback
    from gankit_cli import main
    from gankit_cli.commands import app  # noqa: F401  (for tests and tools that drive the typer app)
except KeyboardInterrupt:
    print("error: interrupted", file=sys.stderr)
    sys.exit(130)
except ImportError as _missing:
    print(
        f"error: the command line needs gankit-runtime and typer ({_missing}): pip install './inference[cpu]'",
        file=sys.stderr,
    )
    sys.exit(1)

if __name__ == "__main__":
    sys.exit(main())
