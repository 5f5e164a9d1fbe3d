"""`python -m fwi_lightning` does what `fwi-run` does."""

from fwi_lightning.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
