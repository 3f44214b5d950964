import os
import sys

# Helper modules of these tests (fake data, the distributed worker) are imported by name, also by spawned workers.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
