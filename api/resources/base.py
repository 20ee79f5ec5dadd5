"""The base of every management resource: bearer token required."""

from flask_restx import Resource

from api.auth import require_token


class ManagementResource(Resource):  # type: ignore[misc]  # flask-restx ships no type hints
    method_decorators = [require_token]
