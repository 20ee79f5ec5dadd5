"""/provisioning/images: register, upload, list, inspect and delete OS images."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_restx import Namespace
from sqlalchemy import select

from api.auth import requires
from api.docs import PAGE_PARAMS, DocNamespace, errors, page_args, page_json, page_model, schema_model, view_model
from api.requests import json_body
from api.resources.base import ManagementResource
from api.runtime import runtime, session_scope
from octoprov import images
from octoprov.errors import InvalidRequest
from octoprov.models import MAX_ID, Image
from octoprov.pages import paginate
from octoprov.paths import LIBRARY_PATH_PATTERN
from octoprov.roles import Role
from octoprov.specs import parse

ns: DocNamespace = Namespace("images", path="/provisioning/images",
                             description="OS images (WIM, ISO, kernels, cloud images)")
spec_model = schema_model(ns, images.ImageSpec)
view = view_model(ns, images.ImageView)
page = page_model(ns, images.ImageView)

UPLOAD_PARAMS = {
    "name": {"in": "query", "type": "string", "required": True, "minLength": 1, "maxLength": 255},
    "osType": {"in": "query", "type": "string", "required": True, "enum": ["windows", "linux"]},
    "imagePath": {"in": "query", "type": "string", "required": True, "minLength": 1, "maxLength": 500,
                  "pattern": LIBRARY_PATH_PATTERN,
                  "description": "Where to write the file, relative to the images folder"},
    "osVersion": {"in": "query", "type": "string", "maxLength": 100},
    "architecture": {"in": "query", "type": "string", "enum": ["x64", "arm64", "x86"]},
    "imageIndex": {"in": "query", "type": "integer", "minimum": 1, "maximum": 1000},
    "bootWimPath": {"in": "query", "type": "string", "maxLength": 500, "pattern": LIBRARY_PATH_PATTERN},
    "sha256": {"in": "query", "type": "string", "pattern": "^[0-9a-fA-F]{64}$",
               "description": "Expected checksum; the upload is refused if it differs"},
    "payload": {"in": "body", "required": True, "schema": {"type": "string", "format": "binary"},
                "description": "The file's bytes (Content-Type: application/octet-stream)"},
}


@ns.route("")
class ImageList(ManagementResource):
    @ns.doc(params=PAGE_PARAMS)
    @ns.response(200, "Images", page)
    @errors(ns, 400)
    @requires(ns, Role.VIEWER)
    def get(self) -> dict[str, Any]:
        """List images."""
        number, size = page_args()
        with session_scope() as session:
            return page_json(paginate(session, select(Image).order_by(Image.id), number, size), images.ImageView)

    @ns.expect(spec_model)
    @ns.response(201, "Registered", view)
    @errors(ns, 400)
    @requires(ns, Role.ADMIN)
    def post(self) -> tuple[dict[str, Any], int]:
        """Register an image file that is already in the images folder (size and SHA-256 are computed)."""
        spec = parse(images.ImageSpec, json_body())
        root = runtime().settings.effective_images_dir
        with session_scope() as session:
            return images.ImageView.of(images.register_image(session, root, spec)).to_json(), 201


@ns.route("/upload")
class ImageUpload(ManagementResource):
    @ns.doc(params=UPLOAD_PARAMS, consumes=["application/octet-stream"])
    @ns.response(201, "Uploaded and registered", view)
    @errors(ns, 400, 409)
    @requires(ns, Role.ADMIN)
    def post(self) -> tuple[dict[str, Any], int]:
        """Upload an image as the raw request body, streamed to disk; registered only when complete."""
        query: dict[str, str | int] = {k: v for k, v in request.args.items() if k != "payload"}
        if "imageIndex" in query:
            try:
                query["imageIndex"] = int(query["imageIndex"])
            except ValueError:
                raise InvalidRequest({"imageIndex": "must be a whole number"}) from None
        spec = parse(images.UploadSpec, query)
        settings = runtime().settings
        with session_scope() as session:
            image = images.upload_image(
                session, settings.effective_images_dir, spec, request.stream, request.content_length,
                settings.upload_chunk_bytes,
            )
            return images.ImageView.of(image).to_json(), 201


@ns.route(f"/<int(max={MAX_ID}):image_id>/scan")
@ns.param("image_id", "Image id")
class ImageScan(ManagementResource):
    @ns.response(200, "The image with its editions", view)
    @errors(ns, 404, 409, 501)
    @requires(ns, Role.ADMIN)
    def post(self, image_id: int) -> dict[str, Any]:
        """Scan a WIM for its editions (index, name, edition ID, architecture, version, size)."""
        with session_scope() as session:
            image = images.scan_image(session, runtime().settings.effective_images_dir, image_id)
            return images.ImageView.of(image).to_json()


@ns.route(f"/<int(max={MAX_ID}):image_id>")
@ns.param("image_id", "Image id")
class ImageItem(ManagementResource):
    @ns.response(200, "The image", view)
    @errors(ns, 404)
    @requires(ns, Role.VIEWER)
    def get(self, image_id: int) -> dict[str, Any]:
        """Get an image."""
        with session_scope() as session:
            return images.ImageView.of(images.get_image(session, image_id)).to_json()

    @ns.response(204, "Deleted (the file stays in the images folder)")
    @errors(ns, 404, 409)
    @requires(ns, Role.ADMIN)
    def delete(self, image_id: int) -> tuple[str, int]:
        """Delete an image registration; refused while a template or an open task uses it."""
        with session_scope() as session:
            images.delete_image(session, image_id)
        return "", 204
