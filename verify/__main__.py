import sys

from verify.cli import main

if __name__ == "__main__":  # Dask re-imports the main module in its workers: run only as a script
    sys.exit(main())
