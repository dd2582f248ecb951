"""``python -m movierec`` (and ``torchrun -m movierec``): the `movierec` command."""

from movierec.cli import main

if __name__ == "__main__":
    main()
