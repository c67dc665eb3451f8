"""The trench workflow's jobs: Ingest -> TrenchDetection -> Compress -> Segment -> Measure -> Track."""
from .compress import Compress
from .detection import TrenchDetection
from .ingest import Ingest
from .measure import Measure, export_csv, read_cells
from .segment import Segment
from .track import Track, read_cycles

__all__ = ["Ingest", "TrenchDetection", "Compress", "Segment", "Measure", "read_cells", "export_csv",
           "Track", "read_cycles"]
