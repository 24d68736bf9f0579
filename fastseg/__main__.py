"""`python -m fastseg` behaves like the `fastseg` console script (and works under torchrun)."""

from cli.main import main

if __name__ == "__main__":
    main()
