"""The cluster's topology (topology.py) and its lifecycle on a Docker engine (lifecycle.py)."""
