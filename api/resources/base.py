"""The base of every management resource: a caller whose role allows the operation (api.auth)."""

from flask_restx import Resource

from api.auth import authorize


class ManagementResource(Resource):  # type: ignore[misc]  # flask-restx ships no type hints
    method_decorators = [authorize]
