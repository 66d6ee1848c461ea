"""The finance portal (SPEC section 9): `payouts serve`.

`create_app(out_dir, users_file, data_dir)` builds the FastAPI application (server-rendered pages,
a JSON API with HTTP Basic); `serve(...)` runs it with uvicorn on 127.0.0.1 by default.
docs/portal.md describes it.
"""

from pipelines.portal.app import create_app, serve

__all__ = ["create_app", "serve"]
