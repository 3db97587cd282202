"""``agency``: the command-line client of the Agent Agency API.

A pure HTTP client: it imports neither Django nor any app of the project, so it runs
anywhere ``pip install`` puts it and talks to any server that speaks the API
(``/api/v1/...``, ``/api/health``, the task SSE stream). See docs/cli.md.
"""

# The project's version (pyproject.toml's; a test keeps them equal). A constant rather than
# importlib.metadata, which costs a tenth of a second at every start of a short command.
__version__ = "0.1.0"
