"""HTML from Jinja2 templates, escaped by default, sent with a Content-Security-Policy that allows no
inline script: whatever a prompt contains stays text."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import jinja2
from aiohttp import web

from bots.web.signin import SESSION, Session

__all__ = ["CSP", "STATIC_DIR", "Templates", "html"]

HERE: Final = Path(__file__).parent
STATIC_DIR: Final = HERE / "static"
CSP: Final = ("default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; "
              "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
RATIOS: Final = ("1:1", "3:4", "9:16", "4:3", "16:9")


class Templates:
    def __init__(self) -> None:
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                      autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                      undefined=jinja2.StrictUndefined)
        self.env.globals["ratios"] = RATIOS
        self.env.filters["dims"] = lambda a: f"{a.width}×{a.height}" if a.width and a.height else ""

    def render(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)


TEMPLATES = web.AppKey("pixbot_web_templates", Templates)


def html(request: web.Request, name: str, *, status: int = 200, **context: Any) -> web.Response:
    """A page (or fragment) for this request's session; the CSRF token goes into every form."""
    session: Session | None = request.get(SESSION)
    text = request.app[TEMPLATES].render(name, csrf=session.csrf if session else "", path=request.path, **context)
    return web.Response(text=text, status=status, content_type="text/html", headers=security_headers())


def security_headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store"}
