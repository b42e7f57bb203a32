"""`python -m localsoc` runs the command line (see localsoc.cli)."""

from localsoc.cli import main

if __name__ == "__main__":
    main()
