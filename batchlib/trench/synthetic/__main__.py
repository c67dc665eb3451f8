"""``python -m batchlib.trench.synthetic --out DIR ...``"""
import argparse
import sys

from .cli import configure_parser, main

if __name__ == "__main__":
    parser = configure_parser(argparse.ArgumentParser(
        prog="python -m batchlib.trench.synthetic",
        description="Write a synthetic mother-machine acquisition with exact ground truth."))
    sys.exit(main(parser.parse_args()))
