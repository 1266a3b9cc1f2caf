"""``python -m keras_se.bench FIRST.json SECOND.json``: how far two reports' medians moved."""

from keras_se.bench.report import main

if __name__ == "__main__":
    raise SystemExit(main())
