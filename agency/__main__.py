"""``python -m agency`` from the checkout: the same entry point as the installed ``agency`` script."""

from agency.cli import main

if __name__ == "__main__":
    main()
