"""Quality gates run on worker results and on this repository's own code."""
