"""`python -m localsoc` runs the command line (see localsoc.command_line)."""

from localsoc.command_line import main

if __name__ == "__main__":
    main()
