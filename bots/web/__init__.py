"""The studio: pixbot's own web face (pages, event stream, set-up, sign-in), served with the API."""

from bots.web.server import make_server, run_server

__all__ = ["make_server", "run_server"]
