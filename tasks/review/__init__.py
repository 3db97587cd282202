"""Review: the quality gates on a worker's result, verdicts (automatic and overrides) and waivers."""
