"""Run every benchmark in turn (``make bench``); each prints a markdown table.

python benchmarks/run_all.py [--quick]
"""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["bench_perf.py", "bench_core.py", "bench_compression.py", "bench_synthetic.py", "bench_ingest.py",
              "bench_detection.py", "bench_segmentation.py", "bench_independent.py",
              "bench_workflow.py",
              "bench_tracking.py", "bench_interrupt.py", "bench_channel_kind.py",
              "bench_unnamed_channels.py", "bench_checksum.py", "bench_export.py"]


def main() -> int:
    extra = [a for a in sys.argv[1:] if a == "--quick"]
    failed = []
    for name in BENCHMARKS:
        print(f"\n## {name}\n", flush=True)
        if subprocess.run([sys.executable, str(HERE / name), *extra]).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
