"""FastAPI: the same integration as Starlette's, under the name users look for.

::

    from fastapi import FastAPI
    from alertkit.integrations.fastapi import init_app

    app = FastAPI()
    init_app(app, failed_request_status_codes=[*range(500, 600), 429])

See :mod:`alertkit.integrations.starlette`.
"""

from __future__ import annotations

from alertkit.integrations.starlette import init_app

__all__ = ["init_app"]
